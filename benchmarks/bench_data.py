"""FFP-300K pipeline: CPU-stage throughput, and the Ray executor vs the local one.

    python benchmarks/bench_data.py [--clips 6] [--frames 33] [--height 352 --width 640]

Part 1 times the CPU stages on synthetic clips (66 source frames at 30 fps, 1.5× the target size):
`standardize` (PyAV decode → 16 fps resample → cover-crop → H.264 encode) and a mask stage (the
swap erosion and removal mask ∪ bbox of `data/masks.py` on a tracked disc, then the .npz write), in
frames per second of output. Part 2 runs the same two stages over the same clips with the local
executor (2 threads), then `standardize` alone with Ray Data on a local Ray of 2 CPUs, with 1 actor
and then 2 (fresh work folders each; Ray start-up reported separately), and prints the wall times and
the 1 → 2 worker speed-up in steady state: clips per second once every actor has finished its first
clip (each actor's start-up — imports, first decode — taken out by timestamps the stage writes),
beside the machine's own ceiling: the same clips in 1 and then 2 plain single-threaded processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from freeprop.data.executors import LocalExecutor, RayExecutor, limit_threads
from freeprop.data.masks import erode, scaled_px, with_bbox
from freeprop.data.stages.base import Stage, new_sample
from freeprop.data.stages.media import load_video, save_masks
from freeprop.data.stages.standardize import Standardize
from freeprop.video import write_video


class TimedStandardize(Standardize):
    """`standardize`, noting when each sample started and ended (for the steady-state rate)."""

    def process(self, sample):
        start = time.time()
        out = super().process(sample)
        (self.work_dir(sample) / "timing.json").write_text(json.dumps([start, time.time(), os.getpid()]))
        return out


def _standardize_alone(args) -> float:
    """Seconds for one single-threaded process (as a 1-CPU actor is) to standardise `paths`."""
    stage, paths, work = args
    limit_threads(1)
    start = time.perf_counter()
    for s in samples(paths, work):
        stage.process(s)
    return time.perf_counter() - start


def machine_ceiling(stage, paths, work: Path) -> float:
    """How much faster two plain single-threaded processes standardise the clips than one (no Ray): the
    most any executor can get from 2 workers on this machine."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        one = pool.map(_standardize_alone, [(stage, paths, work / "one")])[0]
        halves = pool.map(_standardize_alone, [(stage, paths[0::2], work / "a"), (stage, paths[1::2], work / "b")])
    return one / max(halves)


def steady_rate(work: Path) -> tuple[float, float]:
    """(clips per second once every actor has finished its first clip — the completions after that
    moment over the time they took: start-up and warm-up excluded, an autoscaled actor's late start
    too —, median seconds per clip in an actor)."""
    spans = [json.loads(p.read_text()) for p in work.glob("*/timing.json")]
    warm = max(min(end for _, end, pid in spans if pid == actor) for actor in {pid for *_, pid in spans})
    after = sorted(end for _, end, _ in spans if end > warm)
    return len(after) / (after[-1] - warm), float(np.median([end - start for start, end, _ in spans]))


class MaskOps(Stage):
    name = "mask_ops"
    requires = ("source_video",)

    def process(self, sample):
        frames = load_video(sample["source_video"])
        f, h, w = frames.shape[:3]
        yy, xx = np.mgrid[:h, :w]
        masks = np.stack([(yy - h / 2) ** 2 + (xx - w / 3 - 2 * t) ** 2 <= (h / 5) ** 2 for t in range(f)])
        work = self.work_dir(sample)
        save_masks(work / "swap.npz", erode(masks, scaled_px(8, h, w)))
        save_masks(work / "removal.npz", with_bbox(masks, scaled_px(8, h, w)))
        return sample


def make_clips(folder: Path, count: int, height: int, width: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        base = rng.integers(
            0, 255, (height // 8 + 10, width // 8 + 18, 3), dtype=np.uint8
        )  # room for 66 frames of pan
        big = np.kron(base, np.ones((8, 8, 1), np.uint8))
        frames = np.stack([big[t : t + height, 2 * t : 2 * t + width] for t in range(66)])
        paths.append(write_video(folder / f"clip{i}.mp4", frames, fps=30))
    return paths


def samples(paths, work: Path):
    return [new_sample(sample_id=str(i), track="local", task="swap", source=str(p), work=str(work / str(i)))
            for i, p in enumerate(paths)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--height", type=int, default=352)
    parser.add_argument("--width", type=int, default=640)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
    paths = make_clips(tmp, args.clips, args.height * 3 // 2, args.width * 3 // 2)
    total = args.clips * args.frames
    stages = [Standardize(args.frames, 16.0, args.height, args.width), MaskOps()]

    print(f"{args.clips} clips → {args.frames} frames at {args.width}x{args.height}, CPU")
    for index, stage in enumerate(stages):
        work = tmp / f"single-{index}"
        todo = samples(paths, work)
        if index:  # the mask stage needs standardised sources
            todo = [stages[0].process(s) for s in samples(paths, work)]
        start = time.perf_counter()
        for s in todo:
            stage.process(s)
        seconds = time.perf_counter() - start
        print(f"  {stage.name:12s} {seconds:7.2f} s  {total / seconds:7.1f} frames/s")

    ceiling = machine_ceiling(stages[0], paths, tmp / "ceiling")
    print(f"standardize in 1 → 2 plain single-threaded processes (no Ray): {ceiling:.2f}x (this machine's ceiling)")
    start = time.perf_counter()
    list(LocalExecutor(workers=2).run(stages, samples(paths, tmp / "local")))
    local = time.perf_counter() - start

    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - start
    print(f"local executor, both stages (2 threads): {local:.2f} s; Ray start-up {startup:.1f} s")
    scaled = [TimedStandardize(args.frames, 16.0, args.height, args.width)]  # one stage's pool
    for autoscale in (False, True):
        rates = {}
        for workers in (1, 2):  # standardize with one, then two actors, on 2 CPUs
            scaled[0].workers = workers
            work = tmp / f"ray{workers}{autoscale}"
            start = time.perf_counter()
            results = list(RayExecutor(autoscale=autoscale).run(scaled, samples(paths, work)))
            wall = time.perf_counter() - start
            assert all(r["status"] == "pending" for r in results), [r["error"] for r in results]
            rates[workers], per_clip = steady_rate(work)
            print(f"  {workers} actor(s): {wall:.2f} s wall (pool start-up included), steady "
                  f"{rates[workers]:.2f} clips/s, {per_clip:.2f} s per clip in an actor")  # fmt: skip
        pool = "autoscaling 1..2" if autoscale else "fixed"
        print(f"Ray Data, standardize, {pool} pool: 1 → 2 workers, steady state: {rates[2] / rates[1]:.2f}x")
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
