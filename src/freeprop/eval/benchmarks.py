"""Benchmark cases: EditVerseBench, UNICBench and the pair format (synthetic / FFP-300K test splits).

A `Case` names what every metric needs — the source video, the edited first frame (to run FreeProp),
the target prompt (Frame / Video / Pick), the instruction (the VLM judge) and, for pair data, the
ground-truth target and edit mask. Source videos of the public benchmarks are user-provided;
`load_bench` never crashes on missing files: it returns the cases and a list of what is missing.

- `editverse:ROOT` — `ROOT/EditVerseBench.json` (or `test.json`), records keyed "0", "1", … with
  `<text>` (instruction, `<video1>`-style tags stripped), `<video1>` (source path relative to ROOT),
  `target_prompt`, `type`, `direction` and, for propagation cases, `<image1>` (the edited first
  frame). Other cases take their edited first frame from `ROOT/first_frames/<id>.png|jpg` when
  present (`freeprop eval first-frames` makes them with Qwen-Image-Edit, as the paper did). The
  paper's 125-case subset is not published: `freeprop eval select` writes one by a stated rule
  (`eval/selection.py`); pass any case-id list as `cases=`, one id per line.
- `unic:ROOT` — `ROOT/<Task>/<id>/` with `origin.mp4` or `reference.mp4`, `caption.txt` (the target
  prompt) and, in `Propagation/`, `propagation.png|jpg` (the edited first frame); other tasks take it
  from `ROOT/first_frames/<Task>-<id>.png`. `unic_tasks` picks the task folders (default Propagation,
  whose cases keep their folder name as id; None = all). The baseline videos UNICBench ships in each
  case folder (`VACE.mp4`, `anyv2v.mp4`, `ours.mp4`) are scored by name (`ShippedPredictions`). The VLM
  instruction is `unic_instruction` formatted with the caption (UNICBench has no instruction text;
  the FFP paper's choice is unknown).
- `pairs:ROOT[#SPLIT]` — the pair format of DESIGN.md (default split "test"); sources, targets and
  masks are decoded into memory, edited first frame = target frame 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from freeprop.errors import FreePropInputError
from freeprop.paths import inside, safe_name
from freeprop.video import read_json_object

UNIC_INSTRUCTION = "Edit the video so that it shows: {caption}"
FIRST_FRAMES = "first_frames"  # ROOT/first_frames/<id>.png: edited first frames the benchmark does not ship
UNIC_FFP_TASK = "Propagation"  # UNICBench's first-frame propagation task folder
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass
class Case:
    case_id: str
    source: Path | np.ndarray  # a video file, or decoded uint8 frames [F, H, W, 3]
    first_frame: Path | np.ndarray | None  # the edited first frame (needed to run FreeProp)
    target_prompt: str
    instruction: str
    task: str = ""
    target: np.ndarray | None = None  # ground truth [F, H, W, 3] (pair data only)
    mask: np.ndarray | None = None  # edit mask [F, H, W] (pair data, local edits)
    meta: dict = field(default_factory=dict)


@dataclass
class Bench:
    kind: str
    root: Path
    cases: list[Case]
    missing: list[str]  # "case id: what is missing"


def _clean_instruction(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<(video|image)\d+>", "", text)).strip()


def _first_existing(folder: Path, stem: str) -> Path | None:
    for suffix in _IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def read_case_list(path: str | Path) -> list[str]:
    """Case ids, one per line ('#' comments and blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise FreePropInputError(f"{path}: case list not found")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def load_editverse(root: Path, cases: list[str] | None = None) -> Bench:
    index = next((root / n for n in ("EditVerseBench.json", "test.json") if (root / n).is_file()), None)
    if index is None:
        raise FreePropInputError(
            f"{root}: no EditVerseBench.json (or test.json); point editverse: at the benchmark folder"
        )
    records = read_json_object(index, "an EditVerseBench index")
    if not all(isinstance(r, dict) for r in records.values()):
        raise FreePropInputError(f"{index}: expected an object of case id → case object (EditVerseBench layout)")
    wanted = list(records) if cases is None else cases
    unknown = [c for c in wanted if c not in records]
    if unknown:
        raise FreePropInputError(f"case ids not in {index.name}: {', '.join(unknown[:5])}")
    out, missing = [], []
    for case_id in wanted:
        record = records[case_id]
        safe_name(case_id, f"{index.name}: case id")
        video = record.get("<video1>")
        source = inside(root, video, f"{index.name}: case {case_id}: <video1>") if video else root  # root: missing
        image = record.get("<image1>")
        first = None
        if image and Path(str(image)).suffix.lower() in _IMAGE_SUFFIXES:
            first = inside(root, image, f"{index.name}: case {case_id}: <image1>")
        first = (
            first
            if first is not None and first.is_file()
            else _first_existing(root / FIRST_FRAMES, case_id)
        )
        if not source.is_file():
            missing.append(f"{case_id}: source video {source}")
        out.append(
            Case(
                case_id=case_id,
                source=source,
                first_frame=first,
                target_prompt=record.get("target_prompt", ""),
                instruction=_clean_instruction(record.get("<text>", "")),
                task=record.get("type", ""),
                meta={"direction": record.get("direction", ""), "raw_instruction": record.get("<text>", "")},
            )
        )
    return Bench("editverse", root, out, missing)


def _unic_task_folders(root: Path, tasks: tuple[str, ...] | None) -> list[tuple[str, Path]]:
    """(task, folder) pairs: `tasks` names folders under ROOT (None = every one); a ROOT that is itself
    a Propagation folder (no task folders, case folders directly inside) is read as Propagation."""
    if tasks is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != FIRST_FRAMES)
        return [(name, root / name) for name in names]
    if tasks == (UNIC_FFP_TASK,) and not (root / UNIC_FFP_TASK).is_dir():
        return [(UNIC_FFP_TASK, root)]
    missing = [task for task in tasks if not (root / safe_name(task, "UNICBench task")).is_dir()]
    if missing:
        raise FreePropInputError(f"{root}: no task folder {', '.join(missing)} (UNICBench layout: ROOT/<Task>/<id>/)")
    return [(task, root / task) for task in tasks]


def load_unic(
    root: Path,
    cases: list[str] | None = None,
    instruction: str = UNIC_INSTRUCTION,
    tasks: tuple[str, ...] | None = (UNIC_FFP_TASK,),
) -> Bench:
    # Propagation cases keep their folder name as id ("008"); other tasks' are "<Task>-<id>", so a case
    # list names its tasks itself: with one, every task folder is read.
    if cases is not None and (root / UNIC_FFP_TASK).is_dir():
        tasks = None
    found = []
    for task, folder in _unic_task_folders(root, tasks):
        for case in sorted(p for p in folder.iterdir() if p.is_dir()):
            found.append((case.name if task == UNIC_FFP_TASK else f"{task}-{case.name}", task, case))
    if not found:
        raise FreePropInputError(f"{root}: no Propagation/<id>/ case folders (UNICBench layout)")
    by_id = {case_id: (task, case) for case_id, task, case in found}
    unknown = [c for c in cases or [] if c not in by_id]
    if unknown:
        raise FreePropInputError(f"case ids not in {root}: {', '.join(unknown[:5])}")
    out, missing = [], []
    for case_id in cases if cases is not None else list(by_id):
        task, case = by_id[case_id]
        source = next((case / n for n in ("origin.mp4", "reference.mp4") if (case / n).is_file()), None)
        caption = (case / "caption.txt").read_text().strip() if (case / "caption.txt").is_file() else ""
        if source is None:
            missing.append(f"{case_id}: origin.mp4 / reference.mp4")
        if not caption:
            missing.append(f"{case_id}: caption.txt")
        out.append(
            Case(
                case_id=case_id,
                source=source or case / "origin.mp4",
                first_frame=_first_existing(case, "propagation") or _first_existing(root / FIRST_FRAMES, case_id),
                target_prompt=caption,
                instruction=instruction.format(caption=caption),
                task=task.lower(),
                meta={"folder": case},
            )
        )
    return Bench("unic", root, out, missing)


def load_pairs(root: Path, split: str = "test", cases: list[str] | None = None) -> Bench:
    from freeprop.data.pairs import PairDataset

    try:
        dataset = PairDataset(root, split=split)
    except (FileNotFoundError, OSError) as err:
        raise FreePropInputError(f"{root}: not a pair dataset ({err})") from None
    out = []
    for index, row in enumerate(dataset.rows):
        if cases is not None and row["sample_id"] not in cases:
            continue
        safe_name(row["sample_id"], f"{root}: sample id")
        pair = dataset[index]
        out.append(
            Case(
                case_id=pair.sample_id,
                source=pair.source,
                first_frame=pair.target[0],
                target_prompt=pair.target_caption or pair.instruction,
                instruction=pair.instruction,
                task=pair.task,
                target=pair.target,
                mask=None if pair.mask is None else pair.mask > 127,
                meta={"fps": pair.fps, "track": pair.track},
            )
        )
    return Bench("pairs", root, out, [])


def load_bench(
    spec: str,
    cases: list[str] | None = None,
    unic_instruction: str = UNIC_INSTRUCTION,
    unic_tasks: tuple[str, ...] | None = (UNIC_FFP_TASK,),
) -> Bench:
    """`editverse:ROOT`, `unic:ROOT` or `pairs:ROOT[#SPLIT]` → the benchmark's cases."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("editverse", "unic", "pairs"):
        raise FreePropInputError(f"--bench {spec!r}: use editverse:PATH, unic:PATH or pairs:PATH[#SPLIT]")
    path, _, split = rest.partition("#")
    root = Path(path)
    if not root.is_dir():
        raise FreePropInputError(f"{root}: benchmark folder not found")
    if kind == "editverse":
        return load_editverse(root, cases)
    if kind == "unic":
        return load_unic(root, cases, unic_instruction, unic_tasks)
    return load_pairs(root, split or "test", cases)
