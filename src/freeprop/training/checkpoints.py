"""Checkpoint folders, shared by every training loop in the project (`freeprop train`, the VACE
fine-tune of `freeprop data finetune-vace`).

A checkpoint is a folder `ROOT/step-NNNNNNN/` written as `ROOT/.step-NNNNNNN.partial/` and renamed
into place when complete, then named by the `ROOT/latest` pointer (written atomically); the last
`keep` are kept. A kill at any point leaves the previous complete checkpoint as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from freeprop.video import atomic_path


def partial_folder(root: Path, step: int) -> tuple[Path, Path]:
    """(the folder to write step `step`'s files into, its final name); a stale partial one is cleared."""
    root.mkdir(parents=True, exist_ok=True)
    tmp, final = root / f".step-{step:07d}.partial", root / f"step-{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp, final


def commit(root: Path, tmp: Path, final: Path, keep: int = 3) -> Path:
    """Rename a written checkpoint into place, point `latest` at it, drop all but the newest `keep`."""
    tmp.rename(final)
    with atomic_path(root / "latest") as pointer:
        pointer.write_text(final.name)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def newest_first(root: Path) -> list[Path]:
    """The complete checkpoints, newest first (a resume tries them in turn)."""
    return sorted(root.glob("step-*"), reverse=True) if root.is_dir() else []
