import json

import pytest

from freeprop.cli import main
from freeprop.data.synthetic import write_synthetic
from freeprop.video import write_video
from tests.conftest import moving_pattern


def test_build_checks_models_before_running_and_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    write_video(tmp_path / "videos" / "a.mp4", moving_pattern(20, 32, 32))
    config = tmp_path / "build.yaml"
    config.write_text(
        f"output: {tmp_path / 'out'}\nlocal:\n  sources: {tmp_path / 'videos'}\nmodels:\n  vlm: stub:x\n  device: cpu\n"
    )
    assert main(["data", "build", str(config)]) == 2  # the default detector is not in any cache here
    assert main(["data", "build", str(config), "local.nope=1"]) == 2
    assert main(["data", "build", str(tmp_path / "missing.yaml")]) == 2
    assert main(["data", "build", str(config), "local.sources=" + str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("freeprop: error:") for line in err)
    assert (
        "models.detector: IDEA-Research/grounding-dino-base is not a local path nor in the Hugging Face cache"
        in err[0]
    )
    assert "unknown config key(s) local.nope" in err[1]
    assert not (tmp_path / "out" / "shard-000000.tar").exists()


def test_inspect_prints_statistics_and_writes_a_contact_sheet(tmp_path, capsys):
    write_synthetic(tmp_path / "pairs", {"train": 4}, frames=5, height=32, width=32, progress=False)
    assert (
        main(
            [
                "data",
                "inspect",
                str(tmp_path / "pairs"),
                "--contact-sheet",
                str(tmp_path / "sheet.png"),
                "--count",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    stats = json.loads(out[: out.rindex("}") + 1])
    assert stats["samples"] == 4 and stats["status"] == {"ok": 4} and sum(stats["track/task"].values()) == 4
    from freeprop.video import read_image

    assert read_image(tmp_path / "sheet.png").shape == (3 * 96, 4 * 96, 3)  # 3 pairs × 4 tiles
    assert main(["data", "inspect", str(tmp_path / "nothing")]) == 2


def test_review_writes_the_page(tmp_path, capsys):
    write_synthetic(tmp_path / "pairs", {"train": 4}, frames=5, height=32, width=32, progress=False)
    assert main(["data", "review", str(tmp_path / "pairs"), "-o", str(tmp_path / "review")]) == 0
    assert (tmp_path / "review" / "index.html").read_text().count(
        "class=card"
    ) == 1  # tasks cycle: one removal
    assert (
        main(
            [
                "data",
                "finetune-vace",
                str(tmp_path / "pairs"),
                "--decisions",
                str(tmp_path / "no.json"),
                "-o",
                str(tmp_path / "l"),
            ]
        )
        == 2
    )


def test_source_lists_with_captions(tmp_path):
    from freeprop.data.build import BuildConfig, LocalTrack, make_samples

    (tmp_path / "v").mkdir()
    write_video(tmp_path / "v" / "a.mp4", moving_pattern(5, 16, 16))
    (tmp_path / "list.csv").write_text("path,caption\nv/a.mp4,a red ball\n# skipped\n")
    samples = make_samples(
        BuildConfig(output=str(tmp_path / "o"), local=LocalTrack(sources=str(tmp_path / "list.csv")))
    )
    assert [s["caption_in"] for s in samples] == ["", ""]  # by default the VLM captions every clip (§7.1)
    opted = make_samples(BuildConfig(output=str(tmp_path / "o"),
                                     local=LocalTrack(sources=str(tmp_path / "list.csv"), use_source_captions=True)))  # fmt: skip
    assert [(s["task"], s["caption_in"]) for s in opted] == [
        ("swap", "a red ball"),
        ("removal", "a red ball"),
    ]
    assert samples[0]["source"] == str(tmp_path / "v" / "a.mp4") and samples[0]["work"] == samples[1]["work"]
    assert samples[0]["sample_id"] != samples[1]["sample_id"]


# --- datasets that are damaged or hostile: one line, nothing escapes the folder (issue 16) ---------


@pytest.fixture
def small_dataset(tmp_path):
    assert main(["data", "synth", str(tmp_path / "d"), "--train", "2", "--val", "0", "--test", "0",
                 "--frames", "5", "--size", "16x16"]) == 0
    return tmp_path / "d"


def _rewrite_index(root, change):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(root / "index.parquet").to_pylist()
    pq.write_table(pa.Table.from_pylist([change(dict(r)) for r in rows]), root / "index.parquet")


@pytest.mark.parametrize(
    "damage,message",
    [
        ("garbage-index", "unreadable index"),
        ("missing-column", "missing columns: instruction"),
        ("shard-escapes", "is outside"),
        ("id-escapes", "not a plain name"),
        ("truncated-shard", "no member"),
        ("garbage-shard", "no member"),
    ],
)
def test_damaged_or_hostile_datasets_are_one_line(small_dataset, damage, message, tmp_path, capsys):
    root = small_dataset
    shard = next(root.glob("**/*.tar"))
    if damage == "garbage-index":
        (root / "index.parquet").write_bytes(b"PAR1 not really")
    elif damage == "missing-column":
        _rewrite_index(root, lambda r: {k: v for k, v in r.items() if k != "instruction"})
    elif damage == "shard-escapes":
        _rewrite_index(root, lambda r: r | {"shard": "../../outside.tar"})
    elif damage == "id-escapes":
        _rewrite_index(root, lambda r: r | {"sample_id": "../../x"})
    elif damage == "truncated-shard":
        shard.write_bytes(shard.read_bytes()[:1024])
    elif damage == "garbage-shard":
        shard.write_bytes(b"\x00" * 10 + b"garbage" * 100)
    code = main(["data", "inspect", str(root), "--contact-sheet", str(tmp_path / "sheet.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "sheet.png").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--train", "-5"], "must be at least 0"),
        (["--frames", "0"], "must be at least 1"),
        (["--shard-size", "0"], "must be at least 1"),
        (["--size", "15x16"], "must be even"),
        (["--train", "0", "--val", "0", "--test", "0"], "nothing to write"),
    ],
)
def test_synth_refuses_nonsense_in_one_line(tmp_path, argv, message, capsys):
    from tests.conftest import exit_code

    assert exit_code(["data", "synth", str(tmp_path / "d"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "d").exists()


def test_synth_does_not_mix_clip_sizes_in_one_dataset(tmp_path, capsys):
    base = ["data", "synth", str(tmp_path / "d"), "--train", "2", "--val", "0", "--test", "0", "--frames", "5"]
    assert main([*base, "--size", "16x16"]) == 0
    assert main([*base, "--size", "16x16", "--train", "4"]) == 0  # resuming at the same size is fine
    assert main([*base, "--size", "32x32"]) == 2
    assert "holds clips of 5 frames at 16x16" in capsys.readouterr().err


def test_finetune_vace_from_a_saved_pipeline_writes_the_lora_build_loads(tmp_path, capsys):
    """The command end to end on a VACE folder (diffusers' tiny recipe, saved): the run's folder is
    `freeprop train`'s, and the LoRA it names loads into VACE."""
    from freeprop.data.pairs import PairDataset
    from freeprop.data.stages.synthesis import load_vace
    from tests.data.conftest import build_tiny_vace

    write_synthetic(tmp_path / "pairs", {"train": 4}, frames=9, height=32, width=32, progress=False)
    build_tiny_vace().save_pretrained(tmp_path / "vace")
    removals = PairDataset(tmp_path / "pairs", tasks=("removal",)).rows
    (tmp_path / "decisions.json").write_text(json.dumps({r["sample_id"]: "accept" for r in removals}))
    args = ["data", "finetune-vace", str(tmp_path / "pairs"), "--decisions", str(tmp_path / "decisions.json"),
            "-o", str(tmp_path / "run"), "--vace", str(tmp_path / "vace"), "--steps", "2", "--rank", "4",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 accepted removals, 2 steps" in out and f"models.vace_lora={tmp_path / 'run' / 'adapter'}" in out
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
    load_vace(str(tmp_path / "vace"), "cpu", lora=str(tmp_path / "run" / "adapter"))  # loads the LoRA
    assert main(args) == 2  # a second run into the same folder: --resume or --overwrite
    assert "--resume" in capsys.readouterr().err
    (tmp_path / "none.json").write_text("{}")
    none = [*args[:4], str(tmp_path / "none.json"), "-o", str(tmp_path / "run2"), "--vace", str(tmp_path / "missing")]
    assert main(none) == 2  # said before the (14B) model would load
    assert "no accepted removal pairs" in capsys.readouterr().err


def test_a_build_stopped_by_a_crashing_worker_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    import freeprop.data.build as build
    from freeprop.data.executors import WorkerCrashed

    def crash(*args, **kwargs):
        raise WorkerCrashed("a sample killed its Ray worker process 3 times")

    monkeypatch.setattr(build, "run_build", crash)
    config = tmp_path / "build.yaml"
    config.write_text(f"output: {tmp_path / 'out'}\n")
    assert main(["data", "build", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("freeprop: build stopped: a sample killed its Ray worker") and "Traceback" not in err
