import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from freeprop.cli import build_parser, main, sample_clips
from freeprop.models import build_transformer
from freeprop.video import write_video
from tests.conftest import moving_pattern


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "presets" in out and "heads" in out
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"demo", "edit", "presets", "heads", "train", "data", "eval"}
    data = commands["data"]._subparsers._group_actions[0].choices
    assert set(data) == {"synth", "build", "inspect", "review", "finetune-vace"}


def test_sample_clips_are_bundled():
    assert [p.name for p in sample_clips()] == ["sample_crossing.mp4", "sample_pan.mp4"]


def test_heads_classify_end_to_end(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        write_video(clips / f"v{i}.mp4", moving_pattern(frames=9, height=32, width=32, speed=i + 1))
    out = tmp_path / "heads.json"
    code = main(
        [
            "heads",
            "classify",
            str(clips),
            "--frames",
            "9",
            "--size",
            "32x32",
            "--epsilon",
            "0.05",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert len(report["videos"]) == 3 and set(report["head_map"]) == {"0", "1"}
    assert np.array(report["temporal_votes"]).shape == (2, 2)
    assert f"wrote {out}" in capsys.readouterr().out
    # The map loads into a model and `heads show` reads it back.
    build_transformer("tiny").set_head_map(report["head_map"])
    assert main(["heads", "show", str(out)]) == 0


def test_heads_classify_with_weights_file(tmp_path):
    model = build_transformer("tiny")
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    code = main(
        [
            "heads",
            "classify",
            "--weights",
            str(tmp_path / "w.safetensors"),
            "--num-videos",
            "1",
            "--frames",
            "5",
            "--size",
            "32x32",
            "-o",
            str(tmp_path / "h.json"),
        ]
    )
    assert code == 0
    bad = {k: v for k, v in model.state_dict().items() if not k.startswith("proj_out")}
    bad["blocks.0.ffn.net.2.weight"] = torch.zeros(3, 3)
    save_file(bad, tmp_path / "bad.safetensors")
    assert (
        main(
            [
                "heads",
                "classify",
                "--weights",
                str(tmp_path / "bad.safetensors"),
                "-o",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["heads", "classify", "/no/such/dir"], "no such file or folder"),
        (["heads", "classify", "--model", "wan9"], "neither a preset"),
        (["heads", "classify", "--model", "wan2.1-fun-1.3b-control"], "pass --vae"),
        (["heads", "classify", "--epsilon", "2"], "epsilon"),
        (["heads", "show", "missing.json"], "no such head-map file"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freeprop: error:") and message in err and "\n" not in err


def test_corrupt_video_is_a_user_error(tmp_path, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    assert main(["heads", "classify", str(tmp_path / "bad.mp4"), "-o", str(tmp_path / "h.json")]) == 2
    assert "bad.mp4: not a readable video" in capsys.readouterr().err
    assert not (tmp_path / "h.json").exists()


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
    assert main(["demo", "-o", str(out), "--model", "tiny", "--steps", "1"]) == 0
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
    metrics = json.loads((out / "metrics.json").read_text())
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
    from freeprop.cli import DEFAULT_EDIT_METHOD

    source, edit = edit_inputs
    assert main(["edit", str(source), str(edit), "-o", str(tmp_path / "a.mp4")]) == 0
    assert f"method {DEFAULT_EDIT_METHOD};" in capsys.readouterr().out
    assert (
        main(
            ["edit", str(source), str(edit), "-o", str(tmp_path / "b.mp4"), "--model", "tiny", "--steps", "1"]
        )
        == 0
    )
    assert "method freeprop;" in capsys.readouterr().out
