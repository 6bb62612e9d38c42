"""`freeprop eval first-frames` with a tiny random `QwenImageEditPipeline` of diffusers' real classes."""

import json

import numpy as np
import pytest

from freeprop.cli import main
from freeprop.errors import FreePropInputError
from freeprop.eval.benchmarks import load_bench
from freeprop.eval.first_frames import (
    FirstFrameSettings,
    edit_first_frame,
    edit_first_frames,
    load_qwen_image_edit,
)
from freeprop.video import read_image, write_image, write_video
from tests.conftest import exit_code, moving_pattern

FAST = FirstFrameSettings(steps=2)


@pytest.fixture(scope="module")
def qwen_edit():
    from freeprop.eval.tiny import qwen_image_edit

    pipe = qwen_image_edit()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def editverse(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "edited_first_frame").mkdir()
    clip = moving_pattern(3, 40, 56)
    write_video(tmp_path / "videos" / "a.mp4", clip)
    write_image(tmp_path / "edited_first_frame" / "a.png", clip[0])
    records = {
        "0": {"<text>": "<video1> Propagate <image1>", "<video1>": "videos/a.mp4", "<image1>": "edited_first_frame/a.png",
              "type": "propagation", "target_prompt": "p"},
        "1": {"<text>": "<video1> Turn the sky red", "<video1>": "videos/a.mp4", "type": "change color",
              "target_prompt": "a red sky"},
        "2": {"<text>": "<video1> Add a hat", "<video1>": "videos/missing.mp4", "type": "add object", "target_prompt": "h"},
    }  # fmt: skip
    (tmp_path / "EditVerseBench.json").write_text(json.dumps(records))
    return tmp_path


def test_first_frames_are_made_once_where_missing_and_then_read_by_the_benchmark(editverse, qwen_edit):
    bench = load_bench(f"editverse:{editverse}")
    written, no_source = edit_first_frames(bench, qwen_edit, FAST, model="tiny", progress=False)
    target = editverse / "first_frames" / "1.png"
    assert written == [target] and no_source == ["2"]  # case 0 ships its own; case 2 has no video
    image = read_image(target)
    assert image.shape == (40, 56, 3)  # back at the source's size
    record = json.loads(target.with_suffix(".json").read_text())
    assert record["prompt"] == "Turn the sky red" and record["steps"] == 2 and record["model"] == "tiny"
    assert load_bench(f"editverse:{editverse}").cases[1].first_frame == target

    mtime = target.stat().st_mtime_ns  # a rerun keeps what exists
    assert edit_first_frames(load_bench(f"editverse:{editverse}"), qwen_edit, FAST, progress=False)[0] == []
    assert target.stat().st_mtime_ns == mtime
    again = edit_first_frame(qwen_edit, bench.cases[1], FAST)  # seeded: the same file again
    np.testing.assert_array_equal(again, image)
    other = FirstFrameSettings(steps=2, prompt="{target_prompt}")  # the prompt reaches the model
    assert not np.array_equal(edit_first_frame(qwen_edit, bench.cases[1], other), image)


def test_first_frames_cli(editverse, qwen_edit, monkeypatch, capsys):
    import freeprop.eval.first_frames as first_frames

    loaded = []
    monkeypatch.setattr(first_frames, "load_qwen_image_edit", lambda path, device, dtype: loaded.append(path) or qwen_edit)
    args = ["eval", "first-frames", "--bench", f"editverse:{editverse}", "--model", "qwen-folder", "--steps", "2"]
    assert main(args) == 0
    assert loaded == ["qwen-folder"] and (editverse / "first_frames" / "1.png").is_file()
    captured = capsys.readouterr()
    assert "wrote 1 first frame(s)" in captured.out and "missing: 2: source video" in captured.err


@pytest.mark.parametrize(
    "extra, message",
    [(["--cfg", "0.5"], "true_cfg_scale must be ≥ 1"), (["--prompt", "{caption}"], "prompt template"),
     (["--model", "/nonexistent"], "cannot load QwenImageEditPipeline from /nonexistent")],
)  # fmt: skip
def test_first_frames_bad_input_is_one_line(editverse, capsys, extra, message):
    assert exit_code(["eval", "first-frames", "--bench", f"editverse:{editverse}", "--model", str(editverse), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (editverse / "first_frames").exists()


def test_a_folder_asking_for_custom_code_is_refused(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": "QwenImageEditPipeline", "auto_map": {"x": "y"}}')
    with pytest.raises(FreePropInputError, match="custom code"):
        load_qwen_image_edit(str(tmp_path))
