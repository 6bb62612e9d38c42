"""`freeprop eval select`: stability measured on videos whose answer is known, and the written rule."""

import csv
import json

import numpy as np
import pytest

from freeprop.cli import main
from freeprop.eval.benchmarks import load_bench, read_case_list
from freeprop.eval.selection import SelectionRule, measure_stability, select_cases
from freeprop.video import write_video
from tests.conftest import translating_clip

RULE = SelectionRule(count=2)


def _cut_video(frames=9, size=128):
    """A textured scene that cuts, half-way, to a different scene of other colours."""
    first = translating_clip(frames, size, size, dx=3, dy=0)
    second = 255 - translating_clip(frames, size, size, dx=0, dy=0)[:, ::-1]
    second[..., 0] //= 3
    return np.concatenate([first[: frames // 2], second[frames // 2 :]])


def test_stability_of_videos_with_known_answers():
    still = measure_stability(translating_clip(9, 128, 128, dx=0, dy=0), RULE)
    assert still == {"cut": pytest.approx(0, abs=1e-3), "kept": 1.0}
    # a pan of 4 px a frame over 8 steps moves 32 of 128 columns out of view: 3/4 of frame 0 is left
    pan = measure_stability(translating_clip(9, 128, 128, dx=4, dy=0), RULE)
    assert pan["kept"] == pytest.approx(0.75, abs=0.04) and pan["cut"] < 0.2
    cut = measure_stability(_cut_video(), RULE)
    assert cut["cut"] > RULE.max_cut and cut["kept"] < 0.5


@pytest.fixture
def editverse(tmp_path):
    (tmp_path / "videos").mkdir()
    videos = {"still": translating_clip(9, 64, 64, dx=0, dy=0), "pan": translating_clip(9, 64, 64, dx=2, dy=0),
              "cut": _cut_video(9, 64)}  # fmt: skip
    for name, frames in videos.items():
        write_video(tmp_path / "videos" / f"{name}.mp4", frames)
    cases = [("pan", "change color"), ("still", "add object"), ("cut", "remove object"),
             ("still", "change camera"), ("missing", "stylization"), ("still", "Stylization")]  # fmt: skip
    records = {
        str(i): {"<text>": "<video1> edit", "<video1>": f"videos/{video}.mp4", "type": kind, "target_prompt": "x"}
        for i, (video, kind) in enumerate(cases)
    }
    (tmp_path / "EditVerseBench.json").write_text(json.dumps(records))
    return tmp_path


def test_selection_follows_the_rule(editverse):
    rows = {r["case_id"]: r for r in select_cases(load_bench(f"editverse:{editverse}"), SelectionRule(count=3), False)}
    assert rows["3"]["decision"] == "excluded type" and rows["4"]["decision"] == "no source"
    # still (kept 1.0) ties between cases 1 and 5, broken by id; the pan is next; the cut goes last
    assert [rows[i]["rank"] for i in ("1", "5", "0", "2")] == [1, 2, 3, 4]
    assert [rows[i]["decision"] for i in ("1", "5", "0", "2")] == ["selected"] * 3 + ["ranked out"]
    assert rows["1"]["kept"] == rows["5"]["kept"] == 1.0  # one video, measured once, the same numbers
    assert all(RULE.excludes(name) for name in ("Re-Camera", "re_camera", "Change Camera", "Pose-to-Video"))
    assert not RULE.excludes("change color")


def test_select_cli_writes_a_case_list_eval_reads(editverse, tmp_path, capsys):
    out = tmp_path / "ffp3.txt"
    assert main(["eval", "select", "--bench", f"editverse:{editverse}", "--count", "3", "-o", str(out)]) == 0
    assert read_case_list(out) == ["0", "1", "5"]  # the benchmark's order
    header = out.read_text().splitlines()[0]
    assert header.startswith("# 3 of 6 editverse cases, made by: freeprop eval select --bench editverse:")
    table = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["decision"] for r in table] == ["selected", "selected", "ranked out", "excluded type", "no source",
                                              "selected"]  # fmt: skip
    assert "3 of 6 cases (1 excluded by type, 1 ranked out, 1 without a source video)" in capsys.readouterr().out
    assert [c.case_id for c in load_bench(f"editverse:{editverse}", read_case_list(out)).cases] == ["0", "1", "5"]


@pytest.mark.parametrize(
    "extra, message",
    [(["--count", "0"], "must be at least 1"), (["--max-cut", "2"], "max_cut must be in"),
     (["--bench", "pairs:."], "this step is for editverse:PATH or unic:PATH")],
)  # fmt: skip
def test_select_bad_input_is_one_line(editverse, tmp_path, capsys, extra, message):
    args = ["eval", "select", "--bench", f"editverse:{editverse}", "-o", str(tmp_path / "x.txt"), *extra]
    from tests.conftest import exit_code

    assert exit_code(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.txt").exists()
