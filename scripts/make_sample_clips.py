"""Regenerate the bundled sample clips in src/freeprop/assets/ (procedural, no licence questions).

    python scripts/make_sample_clips.py

Two 33-frame 96×96 clips at 16 fps: a camera pan over a textured scene with a rotating square, and
a static camera with two objects crossing (one leaves the frame).
"""

from pathlib import Path

import cv2
import numpy as np

from freeprop.video import write_video

ASSETS = Path(__file__).resolve().parents[1] / "src" / "freeprop" / "assets"


def texture(height, width, seed):
    rng = np.random.default_rng(seed)
    noise = rng.random((height // 8, width // 8, 3)).astype(np.float32)
    smooth = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    stripes = 0.5 + 0.5 * np.sin(
        np.arange(width)[None, :, None] / 5.0 + np.arange(height)[:, None, None] / 9.0
    )
    return np.clip(255 * (0.6 * smooth + 0.4 * stripes), 0, 255).astype(np.uint8)


def pan_clip(frames=33, size=96):
    world = texture(size, size * 2, seed=1)
    clip = []
    for t in range(frames):
        frame = world[:, 2 * t : 2 * t + size].copy()
        box = cv2.boxPoints(((48, 40 + 10 * np.sin(t / 6)), (28, 28), 8.0 * t)).astype(np.int32)
        cv2.fillPoly(frame, [box], (220, 40, 40))
        clip.append(frame)
    return np.stack(clip)


def crossing_clip(frames=33, size=96):
    background = texture(size, size, seed=2)
    clip = []
    for t in range(frames):
        frame = background.copy()
        cv2.circle(frame, (10 + 3 * t, 30), 12, (30, 200, 60), -1)  # leaves the frame on the right
        cv2.rectangle(frame, (70 - 2 * t, 55), (95 - 2 * t, 80), (40, 60, 220), -1)
        clip.append(frame)
    return np.stack(clip)


if __name__ == "__main__":
    ASSETS.mkdir(parents=True, exist_ok=True)
    write_video(ASSETS / "sample_pan.mp4", pan_clip(), fps=16)
    write_video(ASSETS / "sample_crossing.mp4", crossing_clip(), fps=16)
    print("wrote", sorted(p.name for p in ASSETS.glob("*.mp4")))
