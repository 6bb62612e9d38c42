"""Mask strategies for VACE synthesis (paper §3.1) — pure NumPy / OpenCV on boolean videos [F, H, W].

VACE regenerates where its mask is white and keeps the source elsewhere.

- swap, *without bbox*: the object's mask **eroded** by `erode_px` — VACE regenerates the object's
  interior and keeps a ring of the original object's boundary, "preserving only the boundary regions
  of the target mask" so the new object follows the old silhouette and VACE fills it from its own
  prior (our reading of the paper's "mask erosion strategy");
- removal, *with bbox*: the mask ∪ its per-frame bounding box, dilated by `dilate_px` — a hard
  spatial prior for complete erasure and background reconstruction.

The paper gives no kernel sizes. Defaults are for 720p and scale with the frame's short side
(`scaled_px`): erosion 8 px (one Wan VAE block, so the kept ring spans at least one latent pixel)
and dilation 8 px; both are build-config keys. Empty frames (the object left the frame, or tracking
lost it) stay empty; `is_large` flags masks that cover too much of a frame for a local edit.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_SHORT_SIDE = 720


def scaled_px(px: int, height: int, width: int) -> int:
    """`px` defined at 720p, scaled to this frame size (at least 1)."""
    return max(1, round(px * min(height, width) / REFERENCE_SHORT_SIDE))


def _kernel(px: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))


def _per_frame(masks: np.ndarray, op) -> np.ndarray:
    masks = np.asarray(masks).astype(bool)
    return np.stack([op(m.astype(np.uint8)).astype(bool) for m in masks]) if len(masks) else masks


def erode(masks: np.ndarray, px: int) -> np.ndarray:
    return (
        _per_frame(masks, lambda m: cv2.erode(m, _kernel(px), borderValue=0))
        if px > 0
        else masks.astype(bool)
    )


def dilate(masks: np.ndarray, px: int) -> np.ndarray:
    return _per_frame(masks, lambda m: cv2.dilate(m, _kernel(px))) if px > 0 else masks.astype(bool)


def bbox(masks: np.ndarray) -> np.ndarray:
    """Each frame's filled bounding box of its mask (empty frames stay empty)."""
    masks = np.asarray(masks).astype(bool)
    out = np.zeros_like(masks)
    for t, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            out[t, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    return out


def with_bbox(masks: np.ndarray, dilate_px: int = 0) -> np.ndarray:
    """mask ∪ bbox(mask), dilated by `dilate_px` (removal, with bbox)."""
    masks = np.asarray(masks).astype(bool)
    return dilate(masks | bbox(masks), dilate_px)


def coverage(masks: np.ndarray) -> float:
    """Mean fraction of the frame the mask covers."""
    return float(np.asarray(masks).astype(bool).mean()) if np.size(masks) else 0.0


def is_large(masks: np.ndarray, limit: float = 0.9) -> bool:
    """True if any frame's mask covers more than `limit` of the frame (a filter of ours; the paper has none)."""
    masks = np.asarray(masks).astype(bool)
    return bool(len(masks)) and float(masks.reshape(len(masks), -1).mean(1).max()) > limit


def to_video(masks: np.ndarray) -> np.ndarray:
    """Boolean [F, H, W] → uint8 RGB [F, H, W, 3] (255 = generate / edited), for VACE and the pair format."""
    return np.repeat((np.asarray(masks).astype(np.uint8) * 255)[..., None], 3, axis=-1)
