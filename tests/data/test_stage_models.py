"""Model stages on tiny real transformers models (random weights, built from their config classes)."""

import numpy as np
import pytest
import torch

from freeprop.data.stages.base import new_sample, run_stage
from freeprop.data.stages.global_track import Depth, DepthAnythingV2, i2v_size, normalize_depth
from freeprop.data.stages.grounding import GroundAndTrack, GroundingDinoDetector
from freeprop.data.stages.media import load_masks, load_video, save_video
from tests.conftest import moving_pattern
from tests.data import tiny_models
from tests.data.conftest import DiscTracker


@pytest.fixture(scope="module")
def tiny_grounding_dino(tmp_path_factory):
    return tiny_models.grounding_dino(tmp_path_factory.mktemp("gdino"))


def test_grounding_dino_detector_on_the_real_classes(tiny_grounding_dino):
    model, processor = tiny_grounding_dino
    image = moving_pattern(1, 48, 64)[0]
    found = GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=0.0).detect(
        image, "Ball"
    )
    (x0, y0, x1, y1), score = found
    assert 0 <= score <= 1 and -1 <= x0 <= x1 <= 65 and -1 <= y0 <= y1 <= 49  # pixel xyxy in the frame
    assert GroundingDinoDetector(model, processor, box_threshold=1.01).detect(image, "ball") is None


def test_ground_and_track_stage(tiny_grounding_dino, tmp_path):
    model, processor = tiny_grounding_dino
    source = tmp_path / "src.mp4"
    save_video(source, moving_pattern(5, 32, 32), 16)
    sample = new_sample(sample_id="s", track="local", task="swap", source_video=str(source), object="ball",
                        work=str(tmp_path / "w"))  # fmt: skip
    stage = GroundAndTrack(GroundingDinoDetector(model, processor, 0.0, 0.0), DiscTracker())
    out = run_stage(stage, sample)
    assert out["status"] == "pending" and load_masks(out["masks"]).shape == (5, 32, 32)
    assert (tmp_path / "w" / "box.json").is_file()  # cached for resume
    lost = GroundAndTrack(GroundingDinoDetector(model, processor, 1.01), DiscTracker())
    failed = run_stage(lost, sample | {"work": str(tmp_path / "w2")})
    assert failed["status"] == "failed" and "not found on frame 0" in failed["error"]

    class Everything(DiscTracker):
        def track(self, frames, box):
            return np.ones(frames.shape[:3], bool)

    big = run_stage(GroundAndTrack(GroundingDinoDetector(model, processor, 0.0, 0.0), Everything()),
                    sample | {"work": str(tmp_path / "w3")})  # fmt: skip
    assert big["status"] == "filtered" and "covers more than 90%" in big["error"]


def test_depth_anything_v2_stage_with_one_range_per_video(tmp_path):
    model, processor = tiny_models.depth_anything()
    estimator = DepthAnythingV2(model, processor)
    frames = moving_pattern(4, 32, 40)
    depth = estimator(frames)
    assert depth.shape == (4, 32, 40) and np.isfinite(depth).all()
    half = DepthAnythingV2(model.to(torch.bfloat16), processor)(frames)  # the shipped dtype: same depth map
    assert np.abs(half - depth).max() < 0.05 * (np.abs(depth).max() + 1e-6)
    source = tmp_path / "s.mp4"
    save_video(source, frames, 16)
    out = run_stage(Depth(estimator), new_sample(sample_id="g", track="global", task="stylization",
                                                 source_video=str(source), fps="16", work=str(tmp_path / "w")))  # fmt: skip
    assert out["status"] == "pending" and load_video(out["depth_video"]).shape == (4, 32, 40, 3)


def test_depth_normalisation_uses_one_range_for_the_whole_video():
    depth = np.stack(
        [np.full((2, 2), 1.0), np.full((2, 2), 3.0)]
    )  # per-frame normalisation would make both 0
    video = normalize_depth(depth, 0, 100)
    assert video[0].max() == 0 and video[1].min() == 255 and video.shape == (2, 2, 2, 3)


def test_i2v_videos_are_720p_whatever_the_image_aspect():
    assert i2v_size(720, 1280) == (720, 1280)
    assert i2v_size(1000, 1000) == (720, 1280)  # a square image: 16:9 like the local track, not 960×960
    assert i2v_size(1280, 720) == i2v_size(3000, 1000) == (1280, 720)  # portrait images stay portrait
    assert i2v_size(480, 832, max_area=480 * 832) == (464, 832)  # sides multiples of 16, area ≈ max_area


def test_standardize_keeps_a_portrait_clip_portrait(tmp_path):
    from freeprop.data.stages.standardize import Standardize

    stage = Standardize(frames=5, fps=16, height=16, width=32)
    assert stage.size_for(64, 48) == (32, 16) and stage.size_for(48, 64) == (16, 32)
    assert Standardize(5, 16, 16, 32, keep_orientation=False).size_for(64, 48) == (16, 32)
    source = tmp_path / "portrait.mp4"
    save_video(source, moving_pattern(8, 64, 48), 16)
    out = run_stage(stage, new_sample(sample_id="p", track="local", task="swap", source=str(source),
                                      work=str(tmp_path / "w")))  # fmt: skip
    assert out["status"] == "pending" and load_video(out["source_video"]).shape == (5, 32, 16, 3)


def test_vlm_stage_on_the_real_qwen_class_records_unusable_replies(tiny_qwen_vl, tmp_path):
    from freeprop.data.stages.vlm_stages import IdentifyObject
    from freeprop.vlm import QwenVL

    model, processor = tiny_qwen_vl
    source = tmp_path / "src.mp4"
    save_video(source, np.kron(moving_pattern(3, 8, 8), np.ones((1, 7, 7, 1), np.uint8)), 16)  # 56×56 frames
    stage = IdentifyObject(vlm=QwenVL(model, processor, max_new_tokens=4), retries=2)
    out = run_stage(stage, new_sample(sample_id="q", track="local", task="swap", source_video=str(source),
                                      work=str(tmp_path / "w")))  # fmt: skip
    assert out["status"] == "failed" and out["stage"] == "identify_object"
    assert "no valid JSON with ['Object'] after 2 tries" in out["error"]  # random weights never answer JSON


def test_grounding_dino_detects_in_bfloat16_as_in_float32(tiny_grounding_dino):
    """The shipped config loads Grounding DINO in bf16; its float inputs must follow (they stayed fp32,
    and every local sample failed with "Input type (float) and bias type (BFloat16)")."""
    import copy

    model, processor = tiny_grounding_dino
    image = moving_pattern(1, 48, 64)[0]
    (box32, score32) = GroundingDinoDetector(model, processor, 0.0, 0.0).detect(image, "ball")
    half = copy.deepcopy(model).to(torch.bfloat16)
    (box16, score16) = GroundingDinoDetector(half, processor, 0.0, 0.0).detect(image, "ball")
    assert np.abs(np.subtract(box16, box32)).max() < 2.0 and abs(score16 - score32) < 0.02


def test_qwen_vl_answers_in_bfloat16(tiny_qwen_vl):
    """The shipped config runs every model in bf16: the VLM stages' Qwen2.5-VL included."""
    import copy

    from freeprop.vlm import QwenVL

    model, processor = tiny_qwen_vl
    half = QwenVL(copy.deepcopy(model).to(torch.bfloat16), processor, max_new_tokens=3)
    reply = half.chat([np.kron(moving_pattern(1, 8, 8)[0], np.ones((7, 7, 1), np.uint8))], "What is shown?")
    assert isinstance(reply, str)  # before: no dtype error on the way (pixels follow the model)
