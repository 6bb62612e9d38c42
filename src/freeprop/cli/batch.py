"""Batch editing: a folder of (video, edited frame) pairs or a CSV/JSONL manifest → one output per row.

The model loads once; a row whose output exists is skipped on rerun (outputs are written atomically,
so an existing file is a finished one); a failing row is recorded in OUT/batch_report.json and the
batch carries on. Every path in a manifest resolves inside the manifest's folder.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from freeprop.cli.common import VIDEO_SUFFIXES
from freeprop.errors import FreePropInputError
from freeprop.paths import inside, safe_name

MANIFEST_SUFFIXES = (".csv", ".jsonl")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
REPORT = "batch_report.json"


@dataclass
class Row:
    video: Path
    first_frame: Path
    output: Path
    prompt: str | None = None
    status: str = "pending"  # pending → written | skipped | failed
    error: str | None = None


def is_batch(source: str) -> bool:
    path = Path(source)
    return path.suffix.lower() in MANIFEST_SUFFIXES or (
        path.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in path.iterdir())
    )


def _output_name(name: str, what: str) -> str:
    name = safe_name(name, what)
    return name if Path(name).suffix else name + ".mp4"


def read_manifest(path: Path, out_dir: Path) -> list[Row]:
    """Rows of a CSV (header: video, first_frame[, prompt, output]) or JSONL manifest."""
    if not path.is_file():
        raise FreePropInputError(f"{path}: no such manifest; check the path")
    text = path.read_text(encoding="utf-8-sig")
    try:
        if path.suffix.lower() == ".csv":
            records = list(csv.DictReader(text.splitlines()))
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (csv.Error, json.JSONDecodeError) as err:
        raise FreePropInputError(f"{path}: not a valid {path.suffix[1:].upper()} manifest ({err})") from None
    rows = []
    for line, record in enumerate(records, start=1):
        if not isinstance(record, dict) or not {"video", "first_frame"} <= record.keys():
            raise FreePropInputError(f"{path}: row {line} needs the columns video and first_frame")
        video = inside(path.parent, str(record["video"] or ""), f"{path.name}: row {line}: video")
        first = inside(path.parent, str(record["first_frame"] or ""), f"{path.name}: row {line}: first_frame")
        name = _output_name(str(record.get("output") or video.stem + ".mp4"), f"{path.name}: row {line}: output")
        rows.append(Row(video, first, out_dir / name, record.get("prompt") or None))
    return rows


def _edited_frame_for(video: Path) -> Path | None:
    for stem in (video.stem + ".frame0", video.stem):
        for suffix in IMAGE_SUFFIXES:
            candidate = video.with_name(stem + suffix)
            if candidate.is_file():
                return candidate
    return None


def read_folder(folder: Path, out_dir: Path) -> list[Row]:
    """Each video in `folder` with the edited frame beside it (clip.frame0.png or clip.png).

    `*.edited.mp4` files are `freeprop edit`'s own outputs (its default name), not sources.
    """
    rows = []
    videos = (p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    for video in sorted(v for v in videos if not v.stem.endswith(".edited")):
        first = _edited_frame_for(video)
        row = Row(video, first or video.with_suffix(".png"), out_dir / (video.stem + ".mp4"))
        if first is None:
            row.status, row.error = "failed", f"no edited frame beside it ({video.stem}.png or {video.stem}.frame0.png)"
        rows.append(row)
    return rows


def run_batch(args, editor) -> int:
    """Edit every row; returns the exit status (0 all done, 1 some rows failed)."""
    from tqdm.auto import tqdm

    from freeprop.video import atomic_path

    source = Path(args.source)
    out_dir = Path(args.output) if args.output else source.with_name(source.stem + "_edited")
    if out_dir.exists() and not out_dir.is_dir():
        raise FreePropInputError(f"{out_dir}: a batch writes into a folder, and this is a file")
    rows = read_folder(source, out_dir) if source.is_dir() else read_manifest(source, out_dir)
    if not rows:
        raise FreePropInputError(f"{source}: no rows to edit")
    if len({r.output for r in rows}) != len(rows):
        raise FreePropInputError(f"{source}: two rows write the same output name; give each an `output`")
    out_dir.mkdir(parents=True, exist_ok=True)
    editor.quiet = True
    for row in (bar := tqdm(rows, desc=f"edit ({editor.method})", unit="clip")):
        bar.set_postfix_str(row.video.name)
        if row.status == "failed":
            continue
        if row.output.exists() and not args.overwrite:
            row.status = "skipped"
            continue
        try:
            editor.edit_one(row.video, row.first_frame, row.output, row.prompt or args.prompt)
            row.status = "written"
        except FreePropInputError as err:
            row.status, row.error = "failed", str(err)
        except (RuntimeError, ValueError, OSError) as err:  # one bad clip must not end the batch
            row.status, row.error = "failed", f"{type(err).__name__}: {err}"
    counts = {s: sum(r.status == s for r in rows) for s in ("written", "skipped", "failed")}
    report = {"source": str(source), "method": editor.method, "counts": counts,
              "rows": [asdict(r) | {k: str(getattr(r, k)) for k in ("video", "first_frame", "output")} for r in rows]}
    with atomic_path(out_dir / REPORT) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    print(f"batch: {counts['written']} written, {counts['skipped']} already done, {counts['failed']} failed "
          f"→ {out_dir} (per-row status in {REPORT})")
    for row in rows:
        if row.status == "failed":
            print(f"  failed {row.video.name}: {row.error}")
    return 1 if counts["failed"] else 0
