"""The local track's Grounded-SAM2 stage on transformers' real SAM2-video classes, in bf16 as shipped.

SAM2's processors need torchvision's Python transforms. The torchvision wheel that matches torch 2.13
is a CUDA build whose compiled ops cannot load beside the CPU torch, but transformers uses none of them:
`make install` puts the wheel in a side folder (`.venv/torchvision-pure`, not on the path), and the
check runs in a child process that has it on its path and skips the module registering the compiled
ops. The rest of the suite never sees torchvision (it would change other processors' defaults).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TORCHVISION = Path(os.environ.get("FREEPROP_TORCHVISION_DIR", Path(sys.prefix) / "torchvision-pure"))


@pytest.mark.skipif(not (TORCHVISION / "torchvision").is_dir(), reason=f"no side-installed torchvision in {TORCHVISION}")
def test_ground_and_track_loads_and_runs_in_bfloat16(tmp_path):
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TORCHVISION), str(Path(__file__).parents[2])])}
    child = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    # the whole stage, loaded from folders by path with the shipped dtype, yields a pair's masks
    assert result["status"] == "pending", result
    assert result["dtypes"] == ["torch.bfloat16", "torch.bfloat16"]
    assert result["masks_shape"] == [5, 72, 128] and result["frame0_pixels"] > 0
    # on the prompted frame bf16 tracks what fp32 tracks (later frames drift: the weights are random)
    assert result["frame0_iou_bf16_vs_fp32"] > 0.8


def _child(folder: Path) -> dict:
    """Build tiny GDINO + SAM2, save them, run GroundAndTrack from their folders in bf16; report."""
    import types

    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import numpy as np

    from freeprop.data.stages.base import new_sample, run_stage
    from freeprop.data.stages.grounding import GroundAndTrack, Sam2VideoTracker
    from freeprop.data.stages.media import load_masks, save_video
    from tests.data import tiny_models

    # 1. Real classes saved as folders, loaded the way the build loads them.
    detector, detector_processor = tiny_models.grounding_dino(folder)
    detector.save_pretrained(folder / "gdino")
    detector_processor.save_pretrained(folder / "gdino")
    tracker, tracker_processor = tiny_models.sam2_video()
    tracker.save_pretrained(folder / "sam2")
    tracker_processor.save_pretrained(folder / "sam2")

    # 2. A white square moving right over black, as the source clip.
    frames = np.zeros((5, 72, 128, 3), np.uint8)
    for t in range(5):
        frames[t, 20:50, 10 + 8 * t : 40 + 8 * t] = 255
    save_video(folder / "src.mp4", frames, 16)
    sample = new_sample(sample_id="s", track="local", task="swap", source_video=str(folder / "src.mp4"),
                        object="ball", work=str(folder / "work"))  # fmt: skip
    stage = GroundAndTrack(str(folder / "gdino"), str(folder / "sam2"), 0.0, 0.0, dtype="bfloat16")
    stage.check()
    stage.setup()  # what an executor does once per worker
    out = run_stage(stage, sample)
    masks = load_masks(out["masks"]) if out.get("masks") else np.zeros((0, 1, 1), bool)

    # 3. The tracker alone, fp32 against bf16, on the same box.
    box = [10.0, 20.0, 40.0, 50.0]
    full = Sam2VideoTracker(tracker.float(), tracker_processor).track(frames, box)
    half = Sam2VideoTracker(tracker.bfloat16(), tracker_processor).track(frames, box)
    iou = (full[0] & half[0]).sum() / max(1, (full[0] | half[0]).sum())
    return {
        "status": out["status"], "error": out.get("error", ""), "masks_shape": list(masks.shape),
        "frame0_pixels": int(masks[0].sum()) if len(masks) else 0, "frame0_iou_bf16_vs_fp32": float(iou),
        "dtypes": [str(stage.model("detector").model.dtype), str(stage.model("tracker").model.dtype)],
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(_child(Path(sys.argv[1]))))
