"""The reliability audit's bad-input cases (shared/notes/reviews/reliability.md), by its case ids.

Every case here once ended in a traceback or was silently accepted; now each must give one line,
exit status 2, no traceback and nothing written (K12b and S17 need a run or a taken port first and
have their own tests below). The audit's other failures have tests beside the code they exercise:
kills and resumes (K02–K13: tests/training/test_recipe.py), the review server (S12–S16:
tests/data/test_curation.py), a full disk (Y04: tests/data/test_cli_data.py), predictions
that are truncated, resized, or not videos (V03–V05, V16, V18b: tests/eval/test_runner.py,
tests/eval/test_vlm.py), hostile model folders that are refused before any allocation (L17, L19:
tests/cli/test_edit.py), and memory that no longer grows with the clip (R02, R08:
tests/test_pipeline.py, tests/baselines/test_flow_warp.py, benchmarks/edit_memory.py).
"""

import io
import json
import pickle
import shutil
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import moving_pattern


class Payload:
    """Unpickling this would create a marker file: no case may ever do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A dataset, damaged copies of it, hostile model files, an edit's inputs, bad configs."""
    from safetensors.torch import save_file

    from freeprop import FreePropPipeline
    from freeprop.data.synthetic import write_synthetic
    from freeprop.models import build_transformer
    from freeprop.pipeline import make_scheduler
    from freeprop.video import write_image, write_video

    root = tmp_path_factory.mktemp("reliability")
    good = root / "data" / "synth"
    write_synthetic(good, {"train": 2, "test": 2}, frames=5, height=16, width=16, progress=False)
    shard = next(good.glob("*.tar")).name

    def damaged(name, damage):
        shutil.copytree(good, root / "data" / name)
        damage(root / "data" / name)

    def set_rows(folder, **changes):
        table = pq.read_table(folder / "index.parquet").to_pylist()
        table[0].update(changes)
        pq.write_table(pa.Table.from_pylist(table), folder / "index.parquet")

    damaged("badindex", lambda d: (d / "index.parquet").write_bytes(b"PAR1 not parquet at all"))
    damaged("idx_cols", lambda d: pq.write_table(pq.read_table(d / "index.parquet").drop(["status"]), d / "index.parquet"))
    damaged("trunc_shard", lambda d: (d / shard).write_bytes((d / shard).read_bytes()[:3000]))
    damaged("missing_shard", lambda d: (d / shard).unlink())
    damaged("garbage_shard", lambda d: (d / shard).write_bytes(b"\x00garbage" * 512))
    damaged("trav_shard", lambda d: set_rows(d, shard="../../../../../../etc/passwd"))
    damaged("trav_other", lambda d: set_rows(d, shard=f"../synth/{shard}"))
    damaged("trav_sid", lambda d: set_rows(d, sample_id="../../escape"))

    def corrupt_member(d):
        members = []
        with tarfile.open(d / shard) as tar:
            for info in tar.getmembers():
                data = tar.extractfile(info).read()
                members.append((info.name, b"not an mp4" if info.name.endswith(".source.mp4") else data))
        with tarfile.open(d / shard, "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

    damaged("corrupt_member", corrupt_member)

    # hostile weights and model folders
    evil = root / "evil"
    evil.mkdir()
    marker = root / "PAYLOAD_RAN"
    blob = pickle.dumps(Payload(marker))
    (evil / "pickle_named.safetensors").write_bytes(blob)
    (evil / "evil.pt").write_bytes(blob)
    (evil / "raw_pickle.bin").write_bytes(blob)
    tiny = build_transformer("tiny")
    save_file(tiny.state_dict(), evil / "ok.safetensors")
    whole = (evil / "ok.safetensors").read_bytes()
    (evil / "trunc.safetensors").write_bytes(whole[:500])
    (evil / "empty.safetensors").write_bytes(b"")
    (evil / "hugeheader.safetensors").write_bytes((2**62).to_bytes(8, "little") + whole[8:200])
    FreePropPipeline(tiny, make_scheduler()).save_pretrained(evil / "pipe")
    config = json.loads((evil / "pipe" / "transformer" / "config.json").read_text())

    def model(name, edit):
        shutil.copytree(evil / "pipe", evil / name)
        edit(evil / name)

    model("m_badjson", lambda m: (m / "transformer" / "config.json").write_text("{not json"))
    model("m_dim_huge", lambda m: (m / "transformer" / "config.json").write_text(json.dumps(config | {"attention_head_dim": 10**9})))
    model("m_negative", lambda m: (m / "transformer" / "config.json").write_text(json.dumps(config | {"num_layers": -2})))
    model("m_config_list", lambda m: (m / "transformer" / "config.json").write_text("[1, 2]"))
    model("p_badindex", lambda m: (m / "model_index.json").write_text("{oops"))
    index = json.loads((evil / "pipe" / "model_index.json").read_text())
    model("p_unknown_class", lambda m: (m / "model_index.json").write_text(json.dumps(index | {"scheduler": ["diffusers", "NoSuchScheduler"]})))
    model("p_nested_custom", lambda m: (m / "model_index.json").write_text(json.dumps(index | {"scheduler": ["evil_module", "Evil"]})))
    model("p_tf_automap", lambda m: (m / "transformer" / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoModel": "evil.Evil"}})))
    (evil / "vae_bin").mkdir()
    (evil / "vae_bin" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan"}))
    (evil / "vae_bin" / "diffusion_pytorch_model.bin").write_bytes(blob)

    # an edit's inputs, configs, a file where a folder is expected, EditVerse benchmarks
    clip = moving_pattern(5, 32, 32)
    write_video(root / "clip.mp4", clip)
    write_image(root / "edit.png", clip[0])
    (root / "afile").write_text("I am a file")
    (root / "list.yaml").write_text("- a\n- list\n")
    (root / "garbage.yaml").write_bytes(b"\x00\xff\xfe\xfd binary")
    for name, content in (("ev_list", [1, 2, 3]), ("ev_badrec", {"0": 5}),
                          ("ev_escape", {"../../../../escape/X": {"<video1>": "a.mp4"}})):  # fmt: skip
        (root / name).mkdir()
        (root / name / "EditVerseBench.json").write_text(json.dumps(content))
    (root / "preds").mkdir()
    return root


def train_args(root, data="synth", *overrides):
    return ["train", "configs/tiny.yaml", f"data.path={root / 'data' / data}", "data.num_frames=5", "data.height=16",
            "data.width=16", f"output_dir={root / 'runs' / data}", "max_steps=1", "save_every=100", *overrides]  # fmt: skip


def edit_args(root, *extra):
    return ["edit", str(root / "clip.mp4"), str(root / "edit.png"), "-o", str(root / "out" / "o.mp4"), *extra]


def eval_args(root, bench, *extra):
    return ["eval", "--bench", bench, "--pred", f"p={root / 'preds'}", "--metrics", "motion",
            "-o", str(root / "reports" / "r"), *extra]  # fmt: skip


CASES = {
    # freeprop train
    "T05-neg-lr": (lambda r: train_args(r, "synth", "optim.lr=-1"), "optim.lr must be > 0"),
    "T09-corrupt-index": (lambda r: train_args(r, "badindex"), "index.parquet"),
    "T10-index-missing-columns": (lambda r: train_args(r, "idx_cols"), "status"),
    "T11-truncated-shard": (lambda r: train_args(r, "trunc_shard"), "shard-000000.tar"),
    "T12-missing-shard": (lambda r: train_args(r, "missing_shard"), "shard-000000.tar"),
    "T13-garbage-shard": (lambda r: train_args(r, "garbage_shard"), "shard-000000.tar"),
    "T14-corrupt-member-mp4": (lambda r: train_args(r, "corrupt_member"), "source.mp4"),
    "T15-traversal-shard-etc-passwd": (lambda r: train_args(r, "trav_shard"), "outside"),
    "T16-traversal-shard-other-dataset": (lambda r: train_args(r, "trav_other"), "outside"),
    "T17-traversal-sample-id-cache-write": (lambda r: train_args(r, "trav_sid"), "sample"),
    "T21-num-frames-0": (lambda r: train_args(r, "synth", "data.num_frames=0"), "data.num_frames must be ≥ 1"),
    "T22-height-0": (lambda r: train_args(r, "synth", "data.height=0"), "data.height must be ≥ 2"),
    "T24-lora-rank-0": (lambda r: train_args(r, "synth", "lora.rank=0"), "lora.rank must be ≥ 1"),
    "T25-bad-schedule": (lambda r: train_args(r, "synth", "optim.schedule=bogus"), "optim.schedule must be one of"),
    "T26-max-steps-negative": (lambda r: train_args(r, "synth", "max_steps=-3"), "max_steps must be ≥ 1"),
    "T30-config-is-list": (lambda r: ["train", str(r / "list.yaml")], "list.yaml"),
    "T31-config-garbage": (lambda r: ["train", str(r / "garbage.yaml")], "garbage.yaml"),
    "T32-output-dir-is-file": (lambda r: train_args(r, "synth", f"output_dir={r / 'afile'}"), "afile"),
    "T40-eps-negative": (lambda r: train_args(r, "synth", "optim.eps=-1"), "optim.eps must be > 0"),
    "L34-train-weights-truncated": (lambda r: train_args(r, "synth", f"model.weights={r / 'evil' / 'trunc.safetensors'}"),
                                    "trunc.safetensors"),  # fmt: skip
    "L35-train-pipeline-bad-json": (lambda r: train_args(r, "synth", f"model.pipeline={r / 'evil' / 'p_badindex'}"),
                                    "model_index.json"),  # fmt: skip
    # freeprop data
    "D01-review-sample-id-traversal": (lambda r: ["data", "review", str(r / "data" / "trav_sid"), "-o", str(r / "review")],
                                       "sample"),  # fmt: skip
    "D02-review-port-out-of-range": (lambda r: ["data", "review", str(r / "data" / "synth"), "-o", str(r / "review"),
                                                "--serve", "70000"], "70000"),  # fmt: skip
    "D03-review-corrupt-index": (lambda r: ["data", "review", str(r / "data" / "badindex"), "-o", str(r / "review")],
                                 "index.parquet"),  # fmt: skip
    "D04-inspect-corrupt-index": (lambda r: ["data", "inspect", str(r / "data" / "badindex")], "index.parquet"),
    "D05-inspect-truncated-shard-contact-sheet": (
        lambda r: ["data", "inspect", str(r / "data" / "trunc_shard"), "--contact-sheet", str(r / "out" / "sheet.png")],
        "shard-000000.tar"),  # fmt: skip
    "D06-synth-output-is-file": (lambda r: ["data", "synth", str(r / "afile"), "--train", "1"], "afile"),
    "D07-synth-negative-count": (lambda r: ["data", "synth", str(r / "out" / "s"), "--train", "-5"], "-5"),
    "D08-synth-size-odd": (lambda r: ["data", "synth", str(r / "out" / "s"), "--size", "0x0"], "0x0"),
    "D09-synth-frames-0": (lambda r: ["data", "synth", str(r / "out" / "s"), "--frames", "0"], "at least 1"),
    # freeprop eval
    "V06-editverse-escaping-case-id": (lambda r: eval_args(r, f"editverse:{r / 'ev_escape'}"), "case id"),
    "V07-editverse-json-list": (lambda r: eval_args(r, f"editverse:{r / 'ev_list'}"), "EditVerseBench.json"),
    "V08-editverse-record-not-object": (lambda r: eval_args(r, f"editverse:{r / 'ev_badrec'}"), "EditVerseBench.json"),
    "V10-pairs-sample-id-traversal": (lambda r: eval_args(r, f"pairs:{r / 'data' / 'trav_sid'}#train"), "sample"),
    "V11-pairs-corrupt-index": (lambda r: eval_args(r, f"pairs:{r / 'data' / 'badindex'}"), "index.parquet"),
    "V12-pairs-truncated-shard": (lambda r: eval_args(r, f"pairs:{r / 'data' / 'trunc_shard'}"), "shard-000000.tar"),
    "V13-pairs-corrupt-member": (lambda r: eval_args(r, f"pairs:{r / 'data' / 'corrupt_member'}#train"), "source.mp4"),
    "V20-output-is-file": (lambda r: eval_args(r, f"pairs:{r / 'data' / 'synth'}")[:-2] + ["-o", str(r / "afile")],
                           "afile"),  # fmt: skip
    # loading weights and model folders (freeprop edit, heads)
    "L03-weights-pickle-named-safetensors": (lambda r: edit_args(r, "--model", "tiny", "--weights",
                                                                 str(r / "evil" / "pickle_named.safetensors")),
                                             "pickle_named.safetensors"),  # fmt: skip
    "L04-weights-truncated-safetensors": (lambda r: edit_args(r, "--model", "tiny", "--weights",
                                                              str(r / "evil" / "trunc.safetensors")), "trunc.safetensors"),  # fmt: skip
    "L05-weights-empty-safetensors": (lambda r: edit_args(r, "--model", "tiny", "--weights",
                                                          str(r / "evil" / "empty.safetensors")), "empty.safetensors"),  # fmt: skip
    "L06-weights-huge-header-len": (lambda r: edit_args(r, "--model", "tiny", "--weights",
                                                        str(r / "evil" / "hugeheader.safetensors")), "hugeheader"),  # fmt: skip
    "L10-lora-pt-pickle": (lambda r: edit_args(r, "--model", "tiny", "--random-weights", "--lora",
                                               str(r / "evil" / "evil.pt")), "evil.pt"),  # fmt: skip
    "L12-lora-truncated": (lambda r: edit_args(r, "--model", "tiny", "--random-weights", "--lora",
                                               str(r / "evil" / "trunc.safetensors")), "trunc.safetensors"),  # fmt: skip
    "L14-lora-raw-pickle-bin": (lambda r: edit_args(r, "--model", "tiny", "--random-weights", "--lora",
                                                    str(r / "evil" / "raw_pickle.bin")), "raw_pickle.bin"),  # fmt: skip
    "L15-model-config-bad-json": (lambda r: edit_args(r, "--model", str(r / "evil" / "m_badjson")), "config.json"),
    "L18-model-config-huge-dims": (lambda r: edit_args(r, "--model", str(r / "evil" / "m_dim_huge")), "attention_head_dim"),
    "L20-model-config-negative-layers": (lambda r: edit_args(r, "--model", str(r / "evil" / "m_negative")), "num_layers"),
    "L21-model-config-is-list": (lambda r: edit_args(r, "--model", str(r / "evil" / "m_config_list")), "config.json"),
    "L24-pipeline-bad-model-index": (lambda r: edit_args(r, "--model", str(r / "evil" / "p_badindex")), "model_index.json"),
    "L26-pipeline-unknown-class": (lambda r: edit_args(r, "--model", str(r / "evil" / "p_unknown_class")), "NoSuchScheduler"),
    "L27-pipeline-nested-custom-code": (lambda r: edit_args(r, "--model", str(r / "evil" / "p_nested_custom")), "evil_module"),
    "L28-pipeline-transformers-auto-map": (lambda r: edit_args(r, "--model", str(r / "evil" / "p_tf_automap")), "auto_map"),
    "L32-vae-folder-pickle-bin": (lambda r: edit_args(r, "--model", "tiny", "--random-weights", "--vae",
                                                      str(r / "evil" / "vae_bin")), "vae_bin"),  # fmt: skip
    "L33-heads-classify-bad-config": (lambda r: ["heads", "classify", "--model", str(r / "evil" / "m_badjson"),
                                                 "-o", str(r / "out" / "h.json")], "config.json"),  # fmt: skip
}


def _snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "runs" not in p.parts}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, case, capsys):
    from tests.conftest import exit_code

    build, message = CASES[case]
    (world / "out").mkdir(exist_ok=True)
    before = _snapshot(world)
    code = exit_code(build(world))
    err = capsys.readouterr().err.strip()
    assert code == 2, f"{case}: exit {code}: {err[-500:]}"
    *before_error, line = err.replace("\r", "\n").splitlines()
    assert "Traceback" not in err and line.startswith("freeprop") and message in line, err
    assert all("%|" in other for other in before_error), err  # nothing but a progress bar before it
    after = _snapshot(world)
    assert after == before, f"{case} wrote or changed: {sorted(set(after.items()) ^ set(before.items()))[:5]}"
    assert not (world / "PAYLOAD_RAN").exists() and not (world.parent / "escape").exists()


def test_K12b_resume_with_a_changed_lora_rank_says_what_differs(world, capsys):
    from tests.conftest import exit_code

    args = train_args(world, "synth", f"output_dir={world / 'runs' / 'k12'}", "save_every=1", "lora.rank=4")
    assert exit_code(args) == 0
    capsys.readouterr()
    assert exit_code([*args, "lora.rank=8", "--resume"]) == 2
    line = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert line.startswith("freeprop") and "rank" in line and "Traceback" not in line


def test_S17_review_port_in_use_is_one_line(world, capsys):
    import socket

    from tests.conftest import exit_code

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = exit_code(["data", "review", str(world / "data" / "synth"), "-o", str(world / "out" / "review17"),
                          "--serve", str(port)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and str(port) in err.splitlines()[-1], err
