import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from freeprop.cli import main
from freeprop.models import build_transformer
from freeprop.video import write_video
from tests.conftest import exit_code, moving_pattern

# --- freeprop edit ---------------------------------------------------------------------------


@pytest.fixture
def edit_inputs(tmp_path):
    from freeprop.video import write_image

    clip = moving_pattern(frames=17, height=32, width=48)
    write_video(tmp_path / "source.mp4", clip, fps=16)
    write_image(tmp_path / "edit.png", 255 - clip[0])
    return tmp_path / "source.mp4", tmp_path / "edit.png"


def test_edit_writes_output_and_side_by_side(tmp_path, edit_inputs, capsys):
    from freeprop.video import read_image, read_video

    source, edit = edit_inputs
    out, sbs = tmp_path / "out.mp4", tmp_path / "sbs.mp4"
    code = main(["edit", str(source), str(edit), "-o", str(out), "--steps", "2", "--side-by-side", str(sbs)])
    assert code == 0
    video = read_video(out)
    assert video.frames.shape == (17, 32, 48, 3) and video.fps == 16
    assert (
        np.abs(video.frames[0].astype(int) - read_image(edit)).mean() < 8
    )  # frame 0 is the edit (H.264 loss)
    assert read_video(sbs).frames.shape == (17, 32, 144, 3)
    assert f"wrote {out}" in capsys.readouterr().out


def test_edit_with_model_folder_lora_and_frames(tmp_path, edit_inputs):
    from peft import LoraConfig

    from freeprop import FreePropPipeline
    from freeprop.pipeline import make_scheduler, save_adapter

    source, edit = edit_inputs
    pipe = FreePropPipeline(build_transformer("tiny"), make_scheduler("unipc"))
    pipe.save_pretrained(tmp_path / "model")
    pipe.transformer.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_v"], init_lora_weights=False))
    save_adapter(tmp_path / "adapter", pipe.transformer)
    args = [
        "edit",
        str(source),
        str(edit),
        "--model",
        str(tmp_path / "model"),
        "--steps",
        "1",
        "--frames",
        "9",
    ]
    assert main([*args, "-o", str(tmp_path / "a.gif")]) == 0
    assert main([*args, "--lora", str(tmp_path / "adapter"), "-o", str(tmp_path / "frames")]) == 0
    assert len(list((tmp_path / "frames").iterdir())) == 9


@pytest.mark.parametrize(
    "case,message",
    [
        ("corrupt", "not a readable video"),
        ("aspect", "aspect ratio"),
        ("model", "neither a preset"),
        ("cuda", "no CUDA GPU"),
        ("outdir", "does not exist"),
        ("overwrite", "input file"),
        ("frames", "has only 17 frames"),
        ("lora", "no such LoRA"),
    ],
)
def test_edit_user_errors(case, message, tmp_path, edit_inputs, capsys):
    from freeprop.video import write_image

    source, edit = edit_inputs
    out = tmp_path / "out.mp4"
    extra = []
    if case == "corrupt":
        (tmp_path / "bad.mp4").write_bytes(source.read_bytes()[:500])
        source = tmp_path / "bad.mp4"
    elif case == "aspect":
        write_image(tmp_path / "square.png", np.zeros((32, 32, 3), np.uint8))
        edit = tmp_path / "square.png"
    elif case == "model":
        extra = ["--model", str(tmp_path / "no-model")]
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        extra = ["--device", "cuda"]
    elif case == "outdir":
        out = tmp_path / "missing" / "out.mp4"
    elif case == "overwrite":
        out = source
    elif case == "frames":
        extra = ["--frames", "40"]
    elif case == "lora":
        extra = ["--lora", str(tmp_path / "nope"), "--steps", "1"]
    before = source.read_bytes()
    assert main(["edit", str(source), str(edit), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("freeprop: error:") and message in err
    assert source.read_bytes() == before  # inputs untouched


def test_demo_writes_videos_metrics_and_html(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--model", "tiny", "--random-weights", "--steps", "1"]) == 0
    for task in ("swap", "stylization"):
        for name in (
            "source.mp4",
            "target.mp4",
            "freeprop.mp4",
            "flow_warp.mp4",
            "comparison.mp4",
            "comparison.gif",
            "edited_first_frame.png",
        ):
            assert (out / task / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    assert set(metrics) == {"swap", "stylization"} and "psnr" in metrics["swap"]["flow_warp"]
    page = (out / "index.html").read_text()
    assert "swap/comparison.gif" in page and "<table>" in page
    assert "index.html" in capsys.readouterr().out


def test_edit_with_flow_warp_method(tmp_path, edit_inputs):
    from freeprop.video import read_video

    source, edit = edit_inputs
    out = tmp_path / "warp.mp4"
    assert (
        main(["edit", str(source), str(edit), "-o", str(out), "--method", "flow-warp", "--frames", "9"]) == 0
    )
    assert read_video(out).frames.shape == (9, 32, 48, 3)


def test_edit_default_method_follows_the_options(tmp_path, edit_inputs, capsys):
    """No model option: the method measured best on real footage; any model option: the model."""
    from freeprop.defaults import DEFAULT_EDIT_METHOD

    source, edit = edit_inputs
    assert main(["edit", str(source), str(edit), "-o", str(tmp_path / "a.mp4")]) == 0
    assert f"method {DEFAULT_EDIT_METHOD};" in capsys.readouterr().out
    assert (
        main(
            ["edit", str(source), str(edit), "-o", str(tmp_path / "b.mp4"), "--model", "tiny", "--random-weights",
             "--steps", "1"]
        )
        == 0
    )
    assert "method freeprop;" in capsys.readouterr().out
    assert main(["edit", str(source), str(edit), "-o", str(tmp_path / "c.mp4"), "--correction-gate", "8"]) == 0
    assert "method freeprop;" in capsys.readouterr().out  # the bundled model


# --- frame0, the default output, model names ---------------------------------------------------


def test_frame0_writes_the_exact_first_frame_next_to_the_video(tmp_path, edit_inputs, capsys):
    from freeprop.video import read_image, read_video

    source, _ = edit_inputs
    assert main(["frame0", str(source), "--size", "16x16"]) == 0
    png = tmp_path / "source.frame0.png"
    assert np.array_equal(read_image(png), read_video(source, max_frames=1).frames[0])  # lossless, same size
    assert read_image(tmp_path / "source.frame0.16x16.png").shape == (16, 16, 3)
    out = capsys.readouterr().out
    assert "32x48" in out and f"freeprop edit {source} {png}" in out  # HEIGHTxWIDTH, and the next step
    assert main(["frame0", str(source), "-o", str(tmp_path / "f.jpg")]) == 2  # a PNG, losslessly


def test_edit_defaults_its_output_next_to_the_source(tmp_path, edit_inputs, capsys):
    source, edit = edit_inputs
    assert main(["edit", str(source), str(edit)]) == 0
    assert (tmp_path / "source.edited.mp4").is_file()
    assert "32x48" in capsys.readouterr().out  # sizes print as --size takes them: HEIGHTxWIDTH


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--model", "small"], "preset with random weights"),
        (["--steps", "0"], "must be at least 1"),
        (["--frames", "0"], "must be at least 1"),
        (["--size", "0x10"], "at least 2 pixels"),
        (["--identity-correction", "2"], "between 0 and 1"),
        (["--correction-gate", "-1"], "must be at least 0"),
        (["--correction-gate", "nan"], "must be at least 0"),
    ],
)
def test_edit_refuses_nonsense_options_in_one_line(tmp_path, edit_inputs, extra, message, capsys):
    source, edit = edit_inputs
    assert exit_code(["edit", str(source), str(edit), "-o", str(tmp_path / "o.mp4"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_edit_with_the_bundled_model_by_name(tmp_path, edit_inputs, capsys):
    source, edit = edit_inputs
    assert main(["edit", str(source), str(edit), "-o", str(tmp_path / "o.mp4"), "--model", "bundled"]) == 0
    assert "method freeprop;" in capsys.readouterr().out


# --- batch --------------------------------------------------------------------------------------


@pytest.fixture
def batch_folder(tmp_path):
    from freeprop.video import write_image

    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(3):
        clip = moving_pattern(frames=9, height=16, width=16, speed=i + 1)
        write_video(folder / f"c{i}.mp4", clip, fps=8)
        if i < 2:  # c2 has no edited frame beside it
            write_image(folder / f"c{i}.png", 255 - clip[0])
    return folder


def test_batch_over_a_folder_records_failures_and_skips_finished_rows_on_rerun(tmp_path, batch_folder, capsys):
    from freeprop.video import read_video

    out = tmp_path / "out"
    assert main(["edit", str(batch_folder), "-o", str(out)]) == 1  # one row failed, the others were written
    report = json.loads((out / "batch_report.json").read_text())
    assert report["counts"] == {"written": 2, "skipped": 0, "failed": 1}
    failed = [r for r in report["rows"] if r["status"] == "failed"]
    assert failed[0]["video"].endswith("c2.mp4") and "no edited frame" in failed[0]["error"]
    assert read_video(out / "c0.mp4").frames.shape == (9, 16, 16, 3)
    stamp = (out / "c0.mp4").stat().st_mtime_ns
    assert main(["edit", str(batch_folder), "-o", str(out)]) == 1
    assert json.loads((out / "batch_report.json").read_text())["counts"] == {"written": 0, "skipped": 2, "failed": 1}
    assert (out / "c0.mp4").stat().st_mtime_ns == stamp  # untouched
    assert "1 failed" in capsys.readouterr().out


def test_batch_manifest_loads_the_model_once_and_carries_on_past_a_bad_row(tmp_path, batch_folder, monkeypatch):
    import freeprop.pipeline as pipeline

    loads = []
    real_load = pipeline.load_pipeline
    monkeypatch.setattr(pipeline, "load_pipeline", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    (batch_folder / "broken.mp4").write_bytes(b"not a video")
    rows = [
        {"video": "c0.mp4", "first_frame": "c0.png", "output": "first"},
        {"video": "broken.mp4", "first_frame": "c0.png"},
        {"video": "c1.mp4", "first_frame": "c1.png", "prompt": None},
    ]
    manifest = batch_folder / "batch.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    assert main(["edit", str(manifest), "-o", str(out), "--model", "bundled"]) == 1
    report = json.loads((out / "batch_report.json").read_text())
    assert [r["status"] for r in report["rows"]] == ["written", "failed", "written"]
    assert "not a readable video" in report["rows"][1]["error"]
    assert (out / "first.mp4").is_file() and (out / "c1.mp4").is_file()
    assert len(loads) == 1


@pytest.mark.parametrize(
    "row,message",
    [
        ("../outside.mp4,c0.png", "is outside"),
        ("/etc/hostname,c0.png", "is outside"),
        ("c0.mp4,c0.png,,../escape", "not a plain name"),
    ],
)
def test_batch_manifest_paths_stay_in_their_folders(tmp_path, batch_folder, row, message, capsys):
    manifest = batch_folder / "batch.csv"
    manifest.write_text("video,first_frame,prompt,output\n" + row + "\n")
    assert main(["edit", str(manifest), "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()


# --- broken and hostile model files: one line, nothing allocated first (issue 16) ---------------


@pytest.fixture
def model_folder(tmp_path):
    from freeprop import FreePropPipeline
    from freeprop.pipeline import make_scheduler

    FreePropPipeline(build_transformer("tiny"), make_scheduler()).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize(
    "damage,message",
    [
        ("empty-weights", "not a readable .safetensors file"),
        ("truncated-weights", "not a readable .safetensors file"),
        ("header-garbage", "not a readable .safetensors file"),
        ("config-not-json", "unreadable config.json"),
        ("layers-100000", "num_layers = 100000 is not a whole number"),
        ("rope-1e9", "rope_max_seq_len"),
        ("negative-heads", "num_attention_heads = -2"),
        ("unknown-key", "unknown config key(s) ['wobble']"),
        ("lora-truncated", "not a readable .safetensors file"),
        ("lora-misfit", "not a LoRA for this model"),
        ("lora-head-map-misfit", "head map does not fit this model"),
    ],
)
def test_broken_model_files_are_one_line(tmp_path, edit_inputs, model_folder, damage, message, capsys):
    import time

    source, edit = edit_inputs
    transformer = model_folder / "transformer"
    weights = transformer / "diffusion_pytorch_model.safetensors"
    config = json.loads((transformer / "config.json").read_text())
    extra = []
    if damage == "empty-weights":
        weights.write_bytes(b"")
    elif damage == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:300])
    elif damage == "header-garbage":
        weights.write_bytes(b"\xff" * 8 + b"not a header" + weights.read_bytes()[20:])
    elif damage == "config-not-json":
        (transformer / "config.json").write_text("{layers: many")
    elif damage in ("layers-100000", "rope-1e9", "negative-heads", "unknown-key"):
        change = {"layers-100000": {"num_layers": 100000}, "rope-1e9": {"rope_max_seq_len": 1e9},
                  "negative-heads": {"num_attention_heads": -2}, "unknown-key": {"wobble": 1}}[damage]
        (transformer / "config.json").write_text(json.dumps(config | change))
    elif damage.startswith("lora"):
        from peft import LoraConfig

        from freeprop.pipeline import save_adapter

        other = build_transformer("tiny", num_layers=3)
        other.add_adapter(LoraConfig(r=2, target_modules=["to_q"], init_lora_weights=False))
        save_adapter(tmp_path / "adapter", other)
        (tmp_path / "adapter" / "trained_modules.safetensors").unlink()
        if damage != "lora-head-map-misfit":
            (tmp_path / "adapter" / "freeprop_adapter.json").unlink()
        lora = tmp_path / "adapter" / "pytorch_lora_weights.safetensors"
        if damage == "lora-truncated":
            lora.write_bytes(lora.read_bytes()[:100])
        extra = ["--lora", str(tmp_path / "adapter")]
    start = time.perf_counter()
    code = main(["edit", str(source), str(edit), "-o", str(tmp_path / "o.mp4"), "--model", str(model_folder),
                 "--steps", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err
    assert time.perf_counter() - start < 30 and not (tmp_path / "o.mp4").exists()


def test_an_edit_that_cannot_fit_in_memory_is_refused_up_front(tmp_path, edit_inputs, monkeypatch, capsys):
    """The estimate comes from the header (no decoding) and names what it would take."""
    import freeprop.video as video

    source, edit = edit_inputs
    monkeypatch.setattr(video, "available_memory", lambda: 64 * 2**20)  # a machine with 64 MiB free
    assert main(["edit", str(source), str(edit), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "editing at 32x48 needs about" in err and "GiB are free" in err and not (tmp_path / "o.mp4").exists()
    assert video.probe_video(source) == (17, 32, 48)


def test_edit_help_states_the_bundled_models_own_sampling(capsys):
    """`--steps` / `--samples` help names the bundled model's stored defaults: they must follow a re-bundle."""
    from freeprop.demo import default_model

    index_file = Path(default_model()) / "model_index.json"
    if not index_file.is_file():
        pytest.skip("no bundled model in this checkout")
    index = json.loads(index_file.read_text())
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    steps = re.search(r"--steps STEPS denoising steps \(default: the model folder's stored value — the bundled model's: (\d+) —", help_text)
    samples = re.search(r"--samples SAMPLES samples averaged [^(]*\(default: the model folder's stored value — the bundled model's: (\d+) —",
                        help_text)
    assert steps and int(steps[1]) == index["num_inference_steps"]
    assert samples and int(samples[1]) == index["num_samples"]
