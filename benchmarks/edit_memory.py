"""Peak memory of `freeprop edit` against the input's length and frame size, each edit a fresh process.

    python benchmarks/edit_memory.py                                # 250 / 2,000 / 10,000 frames at 128×128
    python benchmarks/edit_memory.py --frames 250 --sizes 128 1024 --methods flow-warp

Peak = the child's maximum resident set (`ru_maxrss`). `edit` streams (decode → windows → encode), so
the peak should not grow with the number of frames; how it grows with the frame size gives the
per-held-frame factor of the up-front memory check (`MEMORY_FACTOR` in `freeprop/cli/edit.py`).
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

from freeprop.video import VideoWriter, write_image


def make_clip(folder: Path, frames: int, size: int) -> tuple[Path, Path]:
    """A panning gradient with a moving square, written frame by frame (this process stays small: a
    child's `ru_maxrss` starts from its parent's high-water mark, so a parent holding the clip would
    inflate every reading)."""
    y, x = np.mgrid[0:size, 0:size]
    with VideoWriter(folder / f"clip{frames}x{size}.mp4", fps=16) as writer:
        for t in range(frames):
            frame = np.stack([(x + t) % 256, (y * 2 + t) % 256, np.full_like(x, 128)], -1).astype(np.uint8)
            c = (t * 2) % (size - 16)
            frame[c : c + 16, c : c + 16] = 255
            writer.write(frame)
            if t == 0:
                edit = frame.copy()
                edit[..., 0] = 255 - edit[..., 0]
    return writer.path, write_image(folder / f"edit{frames}x{size}.png", edit)


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[128], help="square frame sides to try")
    parser.add_argument("--methods", nargs="+", default=["flow-warp", "bundled"])
    args = parser.parse_args()
    print("peak RSS of `freeprop edit` (each a fresh process), 2 CPU cores")
    print("| method | size | frames | decoded MiB (whole video) | peak MiB | peak − shortest's MiB | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in args.methods:
            for size in args.sizes:
                shortest = None
                for frames in sorted(args.frames):
                    video, edit = make_clip(folder, frames, size)
                    extra = ["--method", "flow-warp"] if method == "flow-warp" else ["--model", method]
                    peak, seconds = peak_of(["edit", str(video), str(edit), "-o", str(folder / "out.mp4"), *extra])
                    shortest = shortest if shortest is not None else peak
                    decoded = frames * size * size * 3 / 2**20
                    print(f"| {method} | {size}x{size} | {frames:,} | {decoded:.0f} | {peak:.0f} | {peak - shortest:+.0f} "
                          f"| {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
