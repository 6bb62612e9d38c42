"""Benchmark cases: EditVerseBench, UNICBench and the pair format (synthetic / FFP-300K test splits).

A `Case` names what every metric needs — the source video, the edited first frame (to run FreeProp),
the target prompt (Frame / Video / Pick), the instruction (the VLM judge) and, for pair data, the
ground-truth target and edit mask. Source videos of the public benchmarks are user-provided;
`load_bench` never crashes on missing files: it returns the cases and a list of what is missing.

- `editverse:ROOT` — `ROOT/EditVerseBench.json` (or `test.json`), records keyed "0", "1", … with
  `<text>` (instruction, `<video1>`-style tags stripped), `<video1>` (source path relative to ROOT),
  `target_prompt`, `type`, `direction` and, for propagation cases, `<image1>` (the edited first
  frame). Other cases take their edited first frame from `ROOT/first_frames/<id>.png|jpg` when
  present (the FFP paper edits them with Qwen-Image-Edit). The paper's 125-case subset is not
  published: pass it as a case-id list (`cases=`), one id per line.
- `unic:ROOT` — `ROOT/Propagation/<id>/` with `origin.mp4` or `reference.mp4`, `propagation.png|jpg`
  and `caption.txt` (the target prompt); the VLM instruction is `unic_instruction` formatted with
  the caption (UNICBench has no instruction text; the FFP paper's choice is unknown).
- `pairs:ROOT[#SPLIT]` — the pair format of DESIGN.md (default split "test"); sources, targets and
  masks are decoded into memory, edited first frame = target frame 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from freeprop.errors import FreePropInputError
from freeprop.paths import inside, safe_name

UNIC_INSTRUCTION = "Edit the video so that it shows: {caption}"
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
    try:
        records = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FreePropInputError(f"{index}: not valid JSON ({err})") from None
    if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
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
            else _first_existing(root / "first_frames", case_id)
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


def load_unic(root: Path, cases: list[str] | None = None, instruction: str = UNIC_INSTRUCTION) -> Bench:
    folder = root / "Propagation" if (root / "Propagation").is_dir() else root
    ids = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not ids:
        raise FreePropInputError(f"{root}: no Propagation/<id>/ case folders (UNICBench layout)")
    out, missing = [], []
    for case_id in cases if cases is not None else ids:
        case = folder / safe_name(case_id, "UNICBench case id")
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
                first_frame=_first_existing(case, "propagation"),
                target_prompt=caption,
                instruction=instruction.format(caption=caption),
                task="propagation",
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


def load_bench(spec: str, cases: list[str] | None = None, unic_instruction: str = UNIC_INSTRUCTION) -> Bench:
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
        return load_unic(root, cases, unic_instruction)
    return load_pairs(root, split or "test", cases)
