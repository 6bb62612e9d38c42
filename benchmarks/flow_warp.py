"""Flow-warp baseline: choose its default on the synthetic validation split, and time it at 480p.

    python benchmarks/flow_warp.py --data data/synth [--pairs 40]

Part 1 evaluates every variant (direct / chained × occlusion handling on / off) on the first
`--pairs` validation pairs and prints mean PSNR (and masked PSNR on local edits) per task.
Part 2 times `propagate` at 480×832 on CPU (frames per second, median of 3 runs over 9 frames).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from freeprop.baselines.flow_warp import propagate
from freeprop.data.pairs import PairDataset
from freeprop.eval.metrics.ground_truth import psnr

VARIANTS = {
    "direct": dict(mode="direct", occlusion=True),
    "direct, no occlusion": dict(mode="direct", occlusion=False),
    "chained": dict(mode="chained", occlusion=True),
    "chained, no occlusion": dict(mode="chained", occlusion=False),
}


def choose_default(data: str, pairs: int) -> None:
    dataset = PairDataset(data, split="val")
    scores: dict[tuple[str, str], list[float]] = {}
    masked: dict[tuple[str, str], list[float]] = {}
    for i in range(min(pairs, len(dataset))):
        pair = dataset[i]
        for name, kwargs in VARIANTS.items():
            out = propagate(pair.source, pair.target[0], **kwargs)
            scores.setdefault((name, pair.task), []).append(psnr(out, pair.target))
            if pair.mask is not None and pair.mask.any():
                masked.setdefault((name, pair.task), []).append(psnr(out, pair.target, pair.mask))
    tasks = sorted({task for _, task in scores})
    print(f"validation pairs: {min(pairs, len(dataset))}; PSNR dB (masked PSNR on local edits)")
    print(f"{'variant':<24}" + "".join(f"{t:>22}" for t in tasks) + f"{'mean':>8}")
    for name in VARIANTS:
        cells = []
        for task in tasks:
            m = masked.get((name, task))
            cells.append(f"{np.mean(scores[(name, task)]):.2f}" + (f" ({np.mean(m):.2f})" if m else ""))
        mean = np.mean([np.mean(scores[(name, t)]) for t in tasks])
        print(f"{name:<24}" + "".join(f"{c:>22}" for c in cells) + f"{mean:>8.2f}")


def time_480p(repeats: int = 3, frames: int = 9) -> None:
    rng = np.random.default_rng(0)
    import cv2

    base = cv2.resize(
        rng.random((60, 120, 3)).astype(np.float32), (832 + 4 * frames, 480), interpolation=cv2.INTER_CUBIC
    )
    clip = (
        (np.stack([base[:, 4 * t : 4 * t + 832] for t in range(frames)]) * 255).clip(0, 255).astype(np.uint8)
    )
    edit = 255 - clip[0]
    for name in ("direct", "chained"):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            propagate(clip, edit, **VARIANTS[name])
            times.append(time.perf_counter() - start)
        print(
            f"480x832, {name}: {(frames - 1) / statistics.median(times):.1f} frames/s (median of {repeats})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--pairs", type=int, default=40)
    args = parser.parse_args()
    choose_default(args.data, args.pairs)
    time_480p()
