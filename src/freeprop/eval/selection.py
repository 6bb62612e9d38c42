"""`freeprop eval select`: the first-frame-propagation subset of a benchmark, chosen by a written rule.

The paper filters EditVerseBench "to 125 videos with stable temporal structures that can be evaluated
under a propagation setting" (§5.1) and UNICBench "with the same principle" to 128 (§9.1); the lists are
not published. Our rule, deterministic and written into the list it produces:

1. **Task.** Drop the categories a first-frame edit cannot express (`EXCLUDED_TYPES`): camera changes,
   control-to-video generation (pose / depth / sketch), detection, inpainting and edit-with-mask.
   On EditVerseBench this leaves 130 of 200 cases (13 categories × 10).
2. **Stability**, measured on each source video at a short side of 128 px:
   - `cut`: the largest Hellinger distance between the colour histograms of consecutive frames (a
     hard cut is ≳ 0.5; a pan or a moving object stays well below);
   - `kept`: the fraction of frame-0 points still tracked in the last frame (DIS flow chained frame to
     frame; a point is lost when it leaves the frame or fails the forward–backward check) — how much
     of what the edited first frame shows is still there to propagate.
3. **Rank and cut.** Cases with a cut above `max_cut` go last, then by `kept` (more is better), then by
   case id; the first `count` are kept (125 for EditVerseBench, 128 for UNICBench).

The list keeps the benchmark's own order; a CSV beside it records every case's measures and decision.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from freeprop.errors import FreePropInputError
from freeprop.eval.benchmarks import Bench
from freeprop.video import atomic_path, read_video, resize_cover_crop

# EditVerseBench's `type` values (lower case) and UNICBench task folders a first-frame edit cannot express
EXCLUDED_TYPES = (
    "change camera", "pose-to-video", "depth-to-video", "sketch-to-video", "detection", "inpainting",
    "edit with mask", "re-camera",
)  # fmt: skip
COUNTS = {"editverse": 125, "unic": 128}  # §5.1 and §9.1


@dataclass(frozen=True)
class SelectionRule:
    count: int
    exclude_types: tuple[str, ...] = EXCLUDED_TYPES
    max_cut: float = 0.5  # Hellinger distance of consecutive frames' histograms; above = a hard cut
    short_side: int = 128  # analysis size
    max_steps: int = 60  # at most this many frame-to-frame steps per video (longer videos are strided)
    grid_step: int = 4  # one tracked frame-0 point every 4 px

    def __post_init__(self):
        if self.count < 1:
            raise FreePropInputError(f"count must be ≥ 1 (got {self.count})")
        if not 0 < self.max_cut <= 1:
            raise FreePropInputError(f"max_cut must be in (0, 1] (got {self.max_cut})")

    def excludes(self, task: str) -> bool:
        """Compared letters and digits only: "Re-Camera", "re_camera" and "ReCamera" are one type."""
        return _letters(task) in {_letters(t) for t in self.exclude_types}


def _letters(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _histogram(frame: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(hist, hist).flatten()


def _sample(grid: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`grid[y, x]` at the nearest pixel of each (x, y) point (points inside the frame)."""
    x = np.clip(np.rint(points[:, 0]).astype(int), 0, grid.shape[1] - 1)
    y = np.clip(np.rint(points[:, 1]).astype(int), 0, grid.shape[0] - 1)
    return grid[y, x]


def measure_stability(frames: np.ndarray, rule: SelectionRule) -> dict[str, float]:
    """`cut` and `kept` (see the module docstring) of uint8 frames [F, H, W, 3]."""
    from freeprop.baselines.flow_warp import FlowEstimator, consistency_mask

    # 1. Analysis copies: short side `rule.short_side`, at most `max_steps` steps.
    height, width = frames.shape[1:3]
    scale = rule.short_side / min(height, width)
    size = (max(8, round(height * scale)), max(8, round(width * scale)))
    stride = max(1, math.ceil((len(frames) - 1) / rule.max_steps))
    small = resize_cover_crop(frames[::stride], *size)[0]

    # 2. Track a grid of frame-0 points frame to frame; measure histogram jumps on the way.
    ys, xs = np.mgrid[0 : size[0] : rule.grid_step, 0 : size[1] : rule.grid_step]
    points = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float32)
    alive = np.ones(len(points), bool)
    flow, cut = FlowEstimator(), 0.0
    for a, b in zip(small[:-1], small[1:]):
        cut = max(cut, cv2.compareHist(_histogram(a), _histogram(b), cv2.HISTCMP_BHATTACHARYYA))
        forward, backward = flow(a, b), flow(b, a)
        alive &= _sample(consistency_mask(forward, backward), points)
        points = points + _sample(forward, points)
        alive &= np.all((points >= -0.5) & (points <= np.array([size[1], size[0]]) - 0.5), axis=1)  # in a pixel
    return {"cut": round(float(cut), 4), "kept": round(float(alive.mean()), 4)}


def select_cases(bench: Bench, rule: SelectionRule, progress: bool = True) -> list[dict]:
    """One row per case: id, task, source, cut, kept, decision ('selected', 'excluded type', 'ranked out',
    'no source'); each source video is measured once (EditVerseBench uses each video for two cases)."""
    from tqdm.auto import tqdm

    rows, measured = [], {}
    for case in tqdm(bench.cases, desc="select", disable=not progress):
        row = {"case_id": case.case_id, "task": case.task, "source": str(case.source), "cut": "", "kept": ""}
        if rule.excludes(case.task):
            row["decision"] = "excluded type"
        elif isinstance(case.source, Path) and not case.source.is_file():
            row["decision"] = "no source"
        else:
            key = str(case.source) if isinstance(case.source, Path) else case.case_id
            if key not in measured:
                frames = case.source if isinstance(case.source, np.ndarray) else read_video(case.source).frames
                measured[key] = measure_stability(frames, rule)
            row |= measured[key]
            row["decision"] = "candidate"
        rows.append(row)
    candidates = sorted(
        (r for r in rows if r["decision"] == "candidate"),
        key=lambda r: (r["cut"] > rule.max_cut, -r["kept"], r["case_id"]),
    )
    for rank, row in enumerate(candidates):
        row["rank"] = rank + 1
        row["decision"] = "selected" if rank < rule.count else "ranked out"
    return rows


def write_selection(rows: list[dict], bench: Bench, rule: SelectionRule, path: Path, command: str) -> Path:
    """The case list (`--cases` format, benchmark order, the rule in its header) and `<list>.csv` beside it."""
    selected = [r["case_id"] for r in rows if r["decision"] == "selected"]
    header = [
        f"# {len(selected)} of {len(rows)} {bench.kind} cases, made by: {command}",
        f"# rule (freeprop.eval.selection): drop types {', '.join(rule.exclude_types)};",
        f"# rank the rest by hard cut (histogram jump > {rule.max_cut}) last, then by the fraction of frame-0",
        "# points still tracked in the last frame (DIS flow), then by id; keep the first "
        f"{rule.count}. Measures: {path.with_suffix('.csv').name}",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(header + selected) + "\n")
    with atomic_path(path.with_suffix(".csv")) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["case_id", "task", "source", "cut", "kept", "rank", "decision"])
        writer.writeheader()
        writer.writerows(rows)
    return path
