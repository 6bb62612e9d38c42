"""Peak memory of `freeprop edit` against the input's length, each edit a fresh process.

    python benchmarks/edit_memory.py                                # 250 / 2,000 / 10,000 frames at 128×128
    python benchmarks/edit_memory.py --frames 250 2000 --methods flow-warp bundled

Peak = the child's maximum resident set (`ru_maxrss`), with the decoded size of the input beside it, so
the ratio (peak − start-up) / decoded bytes is the per-frame cost the up-front memory check uses
(`freeprop.video.EDIT_MEMORY_FACTOR`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from freeprop.video import write_image, write_video


def make_clip(folder: Path, frames: int, size: int) -> tuple[Path, Path]:
    """A panning gradient with a moving square: cheap to encode at any length."""
    y, x = np.mgrid[0:size, 0:size]
    clip = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        clip[t, ..., 0] = (x + t) % 256
        clip[t, ..., 1] = (y * 2 + t) % 256
        clip[t, ..., 2] = 128
        c = (t * 2) % (size - 16)
        clip[t, c : c + 16, c : c + 16] = 255
    video = write_video(folder / f"clip{frames}.mp4", clip, fps=16)
    edit = clip[0].copy()
    edit[..., 0] = 255 - edit[..., 0]
    return video, write_image(folder / f"edit{frames}.png", edit)


def peak_of(argv: list[str]) -> tuple[float, float]:
    """(peak MiB, seconds) of one fresh `freeprop` process."""
    code = (
        "import resource, sys; from freeprop.cli import main; code = main(sys.argv[1:]); "
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"freeprop {' '.join(argv)} failed: {out.stderr.strip().splitlines()[-1]}")
    peak_kib = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("PEAK")))
    return peak_kib / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[250, 2000, 10000])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=["flow-warp", "bundled"])
    args = parser.parse_args()
    print(f"peak RSS of `freeprop edit` at {args.size}x{args.size}, 2 CPU cores")
    print("| method | frames | decoded MiB | peak MiB | (peak − 1st row's) / Δdecoded | seconds |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in args.methods:
            first = None
            for frames in args.frames:
                video, edit = make_clip(folder, frames, args.size)
                extra = ["--method", "flow-warp"] if method == "flow-warp" else ["--model", method]
                peak, seconds = peak_of(["edit", str(video), str(edit), "-o", str(folder / "out.mp4"), *extra])
                decoded = frames * args.size * args.size * 3 / 2**20
                slope = "–" if first is None else f"{(peak - first[1]) / (decoded - first[0]):.1f}"
                first = first or (decoded, peak)
                print(f"| {method} | {frames:,} | {decoded:.0f} | {peak:.0f} | {slope} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
