"""Small helpers the stages share: sample media in and out of the work folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from freeprop.video import atomic_path, read_video, write_video

MEDIA_CRF = 12  # near-lossless intermediates; the pair writer re-encodes once at the end


def save_video(path: Path, frames: np.ndarray, fps: float) -> str:
    write_video(path, frames, fps=fps, crf=MEDIA_CRF)
    return str(path)


def load_video(path: str) -> np.ndarray:
    return read_video(path).frames


def save_masks(path: Path, masks: np.ndarray) -> str:
    """Boolean [F, H, W] → packed bits in an .npz (exact; masks must not go through a lossy codec)."""
    masks = np.asarray(masks).astype(bool)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, bits=np.packbits(masks, axis=-1), shape=np.array(masks.shape))
    return str(path)


def load_masks(path: str) -> np.ndarray:
    data = np.load(path)
    shape = tuple(int(s) for s in data["shape"])
    return np.unpackbits(data["bits"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)


def key_frames(frames: np.ndarray) -> list[np.ndarray]:
    """First, middle and last frames (what the paper's task discrimination examines)."""
    picks = sorted({0, len(frames) // 2, len(frames) - 1})
    return [frames[i] for i in picks]
