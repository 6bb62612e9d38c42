"""Classical first-frame propagation along optical flow (OpenCV DIS) — the no-weights baseline.

For each frame t, the flow from frame t back to frame 0 of the *source* video tells where each pixel
of frame t was in frame 0, and the edited first frame is sampled there (backward warping):

- `direct`: flow t → 0 computed in one go (no drift, but large motions are harder);
- `chained`: flows t → t−1 → … → 0 composed step by step (small motions, but errors accumulate).

For local edits a masked composite warps only the edited region (where the edited first frame
differs from the source frame 0) and keeps the source everywhere else, and occlusions are found by
forward–backward consistency: a pixel whose round trip t → 0 → t misses by more than `occlusion_tol`
pixels (plus 5 % of the motion) has no counterpart in frame 0, so the source pixel is kept there.
Edits that change most of the frame are treated as global and warped whole.

What is carried (`carry`): `pixels` warps the edited frame itself; `residual` warps the edit's residual
(edited frame 0 − source frame 0) and adds it to each source frame, so everything the edit did not
change stays exactly the source, and warping errors only touch the edited region.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import cv2
import numpy as np


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class FlowEstimator:
    """DIS optical flow between two RGB frames: `flow(a, b)[y, x]` = displacement from a's pixel to b."""

    def __init__(self, preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM):
        self.dis = cv2.DISOpticalFlow_create(preset)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.dis.calc(_gray(a), _gray(b), None)  # (H, W, 2) float32


def _grid(height: int, width: int) -> np.ndarray:
    return np.stack(np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)), -1)


def warp(image: np.ndarray, flow: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Sample `image` at (x, y) + flow (backward warping), bilinear."""
    coords = _grid(*flow.shape[:2]) + flow
    return cv2.remap(image, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=border)


def compose(flow_ab: np.ndarray, flow_bc: np.ndarray) -> np.ndarray:
    """Flow a → c from a → b and b → c."""
    return flow_ab + warp(flow_bc, flow_ab)


def consistency_mask(
    flow_ab: np.ndarray, flow_ba: np.ndarray, tol: float = 1.0, rel: float = 0.05
) -> np.ndarray:
    """True where the round trip a → b → a returns within `tol + rel·|flow|` pixels (not occluded)."""
    back = warp(flow_ba, flow_ab)
    error = np.linalg.norm(flow_ab + back, axis=-1)
    magnitude = np.linalg.norm(flow_ab, axis=-1) + np.linalg.norm(back, axis=-1)
    return error <= tol + rel * magnitude


def edit_mask(source0: np.ndarray, edited0: np.ndarray, threshold: int = 12, dilate: int = 2) -> np.ndarray:
    """Where the edited first frame differs from the source's frame 0 (float [H, W] in {0, 1}, dilated)."""
    diff = np.abs(source0.astype(np.int16) - edited0.astype(np.int16)).max(axis=-1) > threshold
    mask = diff.astype(np.uint8)
    if dilate:
        mask = cv2.dilate(mask, np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8))
    return mask.astype(np.float32)


def propagate(source: np.ndarray, edited_first: np.ndarray, **options) -> np.ndarray:
    """Propagate `edited_first` through `source` (uint8 [F, H, W, 3]) at once; see `propagate_frames`."""
    return np.stack(list(propagate_frames(iter(source), edited_first, **options)))


def propagate_frames(
    source: Iterable[np.ndarray],
    edited_first: np.ndarray,
    mode: str = "chained",
    composite: str = "auto",
    occlusion: bool = True,
    occlusion_tol: float = 1.0,
    global_fraction: float = 0.5,
    flow: FlowEstimator | None = None,
    carry: str = "residual",
) -> Iterator[np.ndarray]:
    """Propagate `edited_first` along the optical flow of `source` (uint8 `[H, W, 3]` frames, frame 0
    first), yielding each output frame as soon as its source frame arrives: memory holds frame 0, the
    previous frame and one flow field, whatever the video's length.

    Args:
        mode: `direct` (flow t → 0) or `chained` (composed t → t−1 → … → 0). Default `chained`, by
            measurement: 28.08 vs 27.67 dB mean PSNR on 40 synthetic validation pairs
            (`benchmarks/flow_warp.py`); it wins on removal and swap, direct on stylization.
        composite: `auto` (masked composite unless the edit covers more than `global_fraction` of the
            frame), `always`, or `never`.
        occlusion: keep the source pixel where forward–backward consistency fails.
        carry: `residual` (default, by measurement — see docs/model.md's flow-warp paragraph) or `pixels`.
    """
    if mode not in ("direct", "chained"):
        raise ValueError(f"mode must be 'direct' or 'chained', got {mode!r}")
    if carry not in ("pixels", "residual"):
        raise ValueError(f"carry must be 'pixels' or 'residual', got {carry!r}")
    if composite not in ("auto", "always", "never"):
        raise ValueError(f"composite must be 'auto', 'always' or 'never', got {composite!r}")
    flow = flow or FlowEstimator()
    source = iter(source)
    first = next(source)
    mask0 = edit_mask(first, edited_first)
    use_mask = composite == "always" or (composite == "auto" and mask0.mean() <= global_fraction)
    yield np.asarray(edited_first, np.uint8)
    check = occlusion and use_mask  # a global edit has no "source pixel" to fall back on: warp everywhere
    residual = edited_first.astype(np.float32) - first
    previous, to_first = first, None  # chained: flow t → 0
    for frame in source:
        if mode == "direct":
            flow_t0 = flow(frame, first)
            valid = consistency_mask(flow_t0, flow(first, frame), occlusion_tol) if check else None
        else:
            step = flow(frame, previous)  # t → t−1
            to_first = step if to_first is None else compose(step, to_first)
            flow_t0 = to_first
            # the chain's own errors are not observable: check the newest step's consistency
            valid = consistency_mask(step, flow(previous, frame), occlusion_tol) if check else None
        if carry == "residual":  # the warped edit on top of this frame's own source pixels
            warped = frame + warp(residual, flow_t0)
        else:
            warped = warp(edited_first.astype(np.float32), flow_t0)
        if use_mask:
            weight = warp(mask0, flow_t0)[..., None]
            if valid is not None:
                weight = weight * valid[..., None]
            blended = weight * warped + (1 - weight) * frame
        else:
            blended = warped
        yield np.clip(np.round(blended), 0, 255).astype(np.uint8)
        previous = frame
