import json

import numpy as np
import pytest

from freeprop.errors import FreePropInputError
from freeprop.eval.benchmarks import load_bench, read_case_list
from freeprop.video import write_image, write_video
from tests.conftest import moving_pattern


@pytest.fixture
def editverse(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "edited_first_frame").mkdir()
    (tmp_path / "first_frames").mkdir()
    clip = moving_pattern(5, 32, 48)
    write_video(tmp_path / "videos" / "a.mp4", clip)
    write_video(tmp_path / "videos" / "b.mp4", clip)
    write_image(tmp_path / "edited_first_frame" / "a.jpg", clip[0])
    write_image(tmp_path / "first_frames" / "1.png", clip[0])
    records = {
        "0": {"<text>": "<video1> Propagate the edit of <image1>.", "<video1>": "videos/a.mp4",
              "<image1>": "edited_first_frame/a.jpg", "target_prompt": "a red car", "type": "propagation",
              "direction": "horizontal"},
        "1": {"<text>": "<video1>  Add a small golden crown", "<video1>": "videos/b.mp4", "target_prompt": "a king",
              "type": "add object", "direction": "vertical"},
        "2": {"<text>": "<video1> Remove the dog", "<video1>": "videos/missing.mp4", "target_prompt": "a lawn",
              "type": "remove object", "direction": "vertical"},
    }  # fmt: skip
    (tmp_path / "EditVerseBench.json").write_text(json.dumps(records))
    return tmp_path


def test_editverse_layout(editverse):
    bench = load_bench(f"editverse:{editverse}")
    first, second, third = bench.cases
    assert first.first_frame == editverse / "edited_first_frame" / "a.jpg"  # from <image1>
    assert second.first_frame == editverse / "first_frames" / "1.png"  # user-provided edit
    assert third.first_frame is None
    assert second.instruction == "Add a small golden crown" and second.target_prompt == "a king"
    assert second.task == "add object" and second.meta["direction"] == "vertical"
    assert bench.missing == [f"2: source video {editverse / 'videos' / 'missing.mp4'}"]


def test_case_subset_from_a_file(editverse, tmp_path):
    (tmp_path / "ids.txt").write_text("# the paper's subset\n1\n\n0  # propagation\n")
    ids = read_case_list(tmp_path / "ids.txt")
    assert ids == ["1", "0"]
    assert [c.case_id for c in load_bench(f"editverse:{editverse}", ids).cases] == ["1", "0"]
    with pytest.raises(FreePropInputError, match="case ids not in EditVerseBench.json: 9"):
        load_bench(f"editverse:{editverse}", ["9"])


def test_unicbench_layout(tmp_path):
    clip = moving_pattern(5, 32, 32)
    for case, video, image in (
        ("001", "origin.mp4", "propagation.png"),
        ("044", "reference.mp4", "propagation.jpg"),
    ):
        folder = tmp_path / "Propagation" / case
        folder.mkdir(parents=True)
        write_video(folder / video, clip)
        write_image(folder / image, clip[0])
        (folder / "caption.txt").write_text(f"caption {case}\n")
    (tmp_path / "Propagation" / "003").mkdir()
    bench = load_bench(f"unic:{tmp_path}")
    assert [c.case_id for c in bench.cases] == ["001", "003", "044"]
    assert bench.cases[2].source.name == "reference.mp4" and bench.cases[2].first_frame.suffix == ".jpg"
    assert bench.cases[0].instruction == "Edit the video so that it shows: caption 001"
    assert bench.missing == ["003: origin.mp4 / reference.mp4", "003: caption.txt"]


def test_pairs_carry_targets_and_masks(tmp_path):
    from freeprop.data.synthetic import write_synthetic

    write_synthetic(tmp_path, {"test": 2}, frames=5, height=32, width=32, progress=False)
    bench = load_bench(f"pairs:{tmp_path}#test")
    case = bench.cases[0]
    assert case.target.shape == case.source.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(case.first_frame, case.target[0])
    assert case.mask is not None and case.mask.dtype == bool  # swap is a local edit


@pytest.mark.parametrize("spec, message", [("nope", "use editverse:PATH"), ("unic:/nowhere", "not found")])
def test_bad_bench_specs(spec, message):
    with pytest.raises(FreePropInputError, match=message):
        load_bench(spec)


@pytest.mark.parametrize(
    "record_id,record,message",
    [
        ("../../../../escape/X", {"<video1>": "videos/a.mp4"}, "not a plain name"),
        ("a", {"<video1>": "/etc/hostname"}, "is outside"),
        ("a", {"<video1>": "../../outside.mp4"}, "is outside"),
        ("a", {"<video1>": "videos/a.mp4", "<image1>": "/etc/passwd.png"}, "is outside"),
    ],
)
def test_editverse_paths_and_ids_stay_inside_the_benchmark(tmp_path, record_id, record, message):
    (tmp_path / "EditVerseBench.json").write_text(json.dumps({record_id: record}))
    with pytest.raises(FreePropInputError, match=message):
        load_bench(f"editverse:{tmp_path}")


@pytest.mark.parametrize("content", ["[1, 2]", '{"a": 3}', "\x00\xff"])
def test_editverse_json_of_the_wrong_shape_is_one_line(tmp_path, content):
    (tmp_path / "EditVerseBench.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(FreePropInputError, match="EditVerseBench.json"):
        load_bench(f"editverse:{tmp_path}")


def _unic_case(folder, clip, first_frame=True):
    folder.mkdir(parents=True)
    write_video(folder / "origin.mp4", clip)
    (folder / "caption.txt").write_text(f"caption {folder.name}")
    if first_frame:
        write_image(folder / "propagation.png", clip[0])


def test_unicbench_tasks_and_case_lists_naming_them(tmp_path):
    clip = moving_pattern(5, 32, 32)
    _unic_case(tmp_path / "Propagation" / "001", clip)
    _unic_case(tmp_path / "ID_Insert" / "008", clip, first_frame=False)
    _unic_case(tmp_path / "Stylization" / "002", clip, first_frame=False)
    (tmp_path / "first_frames").mkdir()
    write_image(tmp_path / "first_frames" / "ID_Insert-008.png", clip[0])

    assert [c.case_id for c in load_bench(f"unic:{tmp_path}").cases] == ["001"]  # default: Propagation only
    everything = load_bench(f"unic:{tmp_path}", unic_tasks=None)
    assert [(c.case_id, c.task) for c in everything.cases] == [
        ("ID_Insert-008", "id_insert"), ("001", "propagation"), ("Stylization-002", "stylization")]
    insert = everything.cases[0]
    assert insert.first_frame == tmp_path / "first_frames" / "ID_Insert-008.png"  # the first_frames convention
    assert insert.meta["folder"] == tmp_path / "ID_Insert" / "008" and everything.cases[2].first_frame is None
    listed = load_bench(f"unic:{tmp_path}", ["Stylization-002", "001"])  # a list names its tasks itself
    assert [c.case_id for c in listed.cases] == ["Stylization-002", "001"]
    with pytest.raises(FreePropInputError, match="no task folder Re-Camera"):
        load_bench(f"unic:{tmp_path}", unic_tasks=("Re-Camera",))
    with pytest.raises(FreePropInputError, match="case ids not in"):
        load_bench(f"unic:{tmp_path}", ["ID_Insert-999"])
