"""Paths taken from data files (benchmark JSON, manifests, pair indexes, review decisions) stay inside
their folder: one check, used wherever such a path or name meets the file system."""

from __future__ import annotations

import os
from pathlib import Path

from freeprop.errors import FreePropInputError


def safe_name(name: str, what: str) -> str:
    """`name` as one file-name component (a case or sample id): no folders, no `..`, nothing hidden."""
    text = str(name)
    if not text or text in (".", "..") or any(c in text for c in "/\\\0") or text.startswith("."):
        raise FreePropInputError(f"{what} {text!r} is not a plain name (no folders, no '..')")
    return text


def inside(root: str | os.PathLike, relative: str, what: str) -> Path:
    """`relative` resolved under `root`; absolute paths and paths that climb out are refused."""
    root = Path(root).resolve()
    path = (root / str(relative)).resolve()
    if not str(relative) or not path.is_relative_to(root):
        raise FreePropInputError(f"{what} {str(relative)!r} is outside {root}; paths in a data file stay in its folder")
    return path
