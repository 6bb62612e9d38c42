"""Metric throughput on CPU and the effect of the embedding cache.

    python benchmarks/bench_eval.py [--size tiny|base] [--frames 33] [--height 240 --width 416]

Builds random CLIP / DINOv2 models from their config classes (`tiny`, or `base` = ViT-B-sized
towers, closer to real CPU cost), a clip of `--frames` frames, and times each metric (median of 3)
as frames per second of input video. Then runs the full runner twice over 4 cases with the same
embedding cache and prints the wall time of the first (cold) and second (warm) run and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from freeprop.eval.benchmarks import Bench, Case
from freeprop.eval.metrics.embedding import (
    load_clip_embedder,
    load_clip_scorer,
    load_dino_embedder,
    temporal_consistency,
)
from freeprop.eval.metrics.motion import flow_epe, warping_error
from freeprop.eval.runner import EmbeddingCache, MetricModels, Scorer, run
from freeprop.eval.tiny import save_clip, save_dino
from freeprop.video import write_video


def clip_video(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height + frames * 2, width + frames * 3, 3), dtype=np.uint8)
    return np.stack([base[2 * t : 2 * t + height, 3 * t : 3 * t + width] for t in range(frames)])


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=416)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    clip_dir, dino_dir = save_clip(tmp / "clip", args.size), save_dino(tmp / "dino", args.size)
    models = MetricModels(
        clip_embedder=load_clip_embedder(str(clip_dir)),
        dino_embedder=load_dino_embedder(str(dino_dir)),
        clip_scorer=load_clip_scorer(str(clip_dir)),
    )
    video = clip_video(args.frames, args.height, args.width)
    frames, source = list(video), clip_video(args.frames, args.height, args.width, seed=1)
    text = models.clip_scorer.text_embedding("a red car")
    per_metric = {
        "clip (CLIP vision pooler + consistency)": lambda: temporal_consistency(models.clip_embedder(frames)),
        "dino (DINOv2 pooler + consistency)": lambda: temporal_consistency(models.dino_embedder(frames)),
        "frame (CLIP image + text, 100·cos)": lambda: models.clip_scorer.score(
            models.clip_scorer.image_embeddings(frames), text
        ),
        "motion (DIS flow EPE)": lambda: flow_epe(video, source),
        "warp (DIS flow, fwd-bwd mask)": lambda: warping_error(video, source),
    }
    print(f"{args.size} models, {args.frames} frames at {args.width}x{args.height}, CPU")
    print(f"{'metric':42s} {'seconds':>8s} {'frames/s':>9s}")
    for name, fn in per_metric.items():
        fn()  # warm-up
        seconds = timed(fn)
        print(f"{name:42s} {seconds:8.3f} {args.frames / seconds:9.1f}")

    # The runner twice over the same predictions, sharing one embedding cache.
    cases = []
    (tmp / "pred").mkdir()
    for i in range(4):
        frames_i = clip_video(args.frames, args.height, args.width, seed=10 + i)
        write_video(tmp / "pred" / f"{i}.mp4", frames_i)
        cases.append(Case(str(i), frames_i, None, "a red car", "make it red"))
    bench = Bench("synthetic", tmp, cases, [])
    metrics = ("clip", "dino", "frame")
    walls = []
    for attempt in ("cold", "warm"):
        cache = EmbeddingCache(tmp / "cache")
        start = time.perf_counter()
        run(
            bench,
            {"pred": tmp / "pred"},
            Scorer(models, metrics, cache),
            tmp / f"report-{attempt}",
            progress=False,
        )
        walls.append(time.perf_counter() - start)
        print(f"runner, {attempt} cache: {walls[-1]:.2f} s ({cache.hits} hits, {cache.misses} misses)")
    print(f"second run / first run: {walls[1] / walls[0]:.2f}")


if __name__ == "__main__":
    main()
