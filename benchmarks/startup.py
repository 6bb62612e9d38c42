"""Start-up time of the `freeprop` command: `--help`, and a flow-warp edit of a 2-frame clip (where
start-up is nearly all of the time). Wall-clock medians over repeated runs, each a fresh process.

    python benchmarks/startup.py                          # this checkout
    python benchmarks/startup.py --compare OLD/src        # and another source tree, side by side

Targets (issue 14): `freeprop --help` < 1 s and a flow-warp edit's start-up < 2 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "src" / "freeprop" / "assets" / "sample_pan.mp4"


def timed(argv: list[str], src: Path, repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "freeprop.cli", *argv], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def commands(work: Path) -> dict[str, list[str]]:
    subprocess.run([sys.executable, "-m", "freeprop.cli", "frame0", str(CLIP), "-o", str(work / "f.png")],
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True, capture_output=True)
    edit = ["edit", str(CLIP), str(work / "f.png"), "-o", str(work / "o.mp4"), "--method", "flow-warp"]
    return {"freeprop --help": ["--help"], "freeprop edit --method flow-warp (2 frames)": [*edit, "--frames", "2"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", type=Path, help="another source tree (its src/ folder) to time beside")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    trees = {"this checkout": ROOT / "src"} | ({"compared": args.compare} if args.compare else {})
    with tempfile.TemporaryDirectory() as tmp:
        rows = commands(Path(tmp))
        print(f"median wall seconds over {args.repeats} fresh processes, {os.cpu_count()} CPUs")
        print(f"| command | {' | '.join(trees)} |\n|---|{'---|' * len(trees)}")
        for name, argv in rows.items():
            cells = [f"{timed(argv, src, args.repeats):.2f}" for src in trees.values()]
            print(f"| `{name}` | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
