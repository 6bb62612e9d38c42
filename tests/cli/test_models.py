import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from freeprop.cli import main
from freeprop.models import build_transformer
from freeprop.video import write_video
from tests.conftest import exit_code, moving_pattern


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
            "--model",
            "tiny",
            "--random-weights",
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
            "--model",
            "tiny",
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
                "--model",
                "tiny",
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
        (["heads", "classify", "--model", "wan2.1-fun-1.3b-control", "--random-weights"], "pass --vae"),
        (["heads", "classify", "--model", "tiny"], "preset with random weights"),
        (["heads", "classify", "--num-videos", "0"], "must be at least 1"),
        (["heads", "classify", "--epsilon", "2"], "epsilon"),
        (["heads", "show", "missing.json"], "no such head-map file"),
    ],
)
def test_user_errors_are_one_line_exit_2(argv, message, capsys):
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "error:" in err and message in err and "\n" not in err


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x00\xffnot json", "not a JSON head map"),
        (b"[1, 2, 3]", "not a head map"),
        (b'{"0": ["spatial", "sideways"]}', "not a head map"),
        (b'{"head_map": {"x": ["spatial"]}}', "not a head map"),
    ],
)
def test_heads_show_refuses_what_is_not_a_head_map(tmp_path, content, message, capsys):
    (tmp_path / "h.json").write_bytes(content)
    assert main(["heads", "show", str(tmp_path / "h.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("freeprop: error:") and message in err and "\n" not in err


def test_corrupt_video_is_a_user_error(tmp_path, capsys):
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    assert main(["heads", "classify", str(tmp_path / "bad.mp4"), "-o", str(tmp_path / "h.json")]) == 2
    assert "bad.mp4: not a readable video" in capsys.readouterr().err
    assert not (tmp_path / "h.json").exists()




def test_heads_classify_reads_a_fun_control_checkpoint_built_on_meta(tmp_path, monkeypatch):
    """The same --model/--weights forms as `edit`: an original-layout Fun-Control checkpoint with a
    preset, and the preset is never materialised with random weights first."""
    from diffusers import WanTransformer3DModel

    import freeprop.models as models
    from tests.conftest import TINY_FUN_CONTROL
    from tests.models.test_loading import to_original_wan_keys

    save_file(to_original_wan_keys(WanTransformer3DModel(**TINY_FUN_CONTROL).state_dict()), tmp_path / "fc.safetensors")
    devices = []
    real_build = models.build_transformer
    monkeypatch.setattr(models, "build_transformer", lambda *a, **k: devices.append(torch.get_default_device()) or real_build(*a, **k))
    argv = ["heads", "classify", "--model", "tiny", "--weights", str(tmp_path / "fc.safetensors"), "--num-videos", "1",
            "--frames", "5", "--size", "32x32", "-o", str(tmp_path / "h.json")]
    assert main(argv) == 0
    assert set(json.loads((tmp_path / "h.json").read_text())["head_map"]) == {"0", "1"}
    save_file(build_transformer("tiny").state_dict(), tmp_path / "w.safetensors")  # FreeProp weights, same preset
    assert main([*argv[:5], str(tmp_path / "w.safetensors"), *argv[6:]]) == 0
    assert devices and all(d.type == "meta" for d in devices)
