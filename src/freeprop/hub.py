"""Loading pretrained parts (transformers / diffusers `from_pretrained`) with one clear error, and
per-node model staging: inside `staging(folder)`, every load first copies the model to `folder` (a
node-local disk), once per node however many workers load it (Cosmos-Curate's model staging)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from freeprop.errors import FreePropInputError

_STAGING_DIR: ContextVar[str | None] = ContextVar("freeprop_staging_dir", default=None)


def holds_weights(cls) -> bool:
    """A model class (diffusers or transformers), as opposed to a processor, tokenizer or scheduler."""
    from diffusers import DiffusionPipeline, ModelMixin
    from transformers import PreTrainedModel

    return isinstance(cls, type) and issubclass(cls, (ModelMixin, DiffusionPipeline, PreTrainedModel))


def refuse_custom_code(path, subfolder: str | None = None) -> None:
    """A local folder whose config asks for custom code (`auto_map`, `_class_name` from a file) is refused:
    FreeProp never runs code shipped with weights."""
    folder = Path(path) / (subfolder or "")
    for name in ("config.json", "model_index.json", "preprocessor_config.json", "tokenizer_config.json"):
        config = folder / name
        if config.is_file() and '"auto_map"' in config.read_text(errors="replace"):
            raise FreePropInputError(f"{config}: asks for custom code (auto_map); FreeProp loads standard classes only")


def load_pretrained(cls, path: str, device=None, dtype=None, **kwargs):
    """`cls.from_pretrained(path, **kwargs)` — a local folder or a Hugging Face id already in the cache.

    Weights load from safetensors only (`use_safetensors=True`: a folder holding only pickled `.bin`
    files is refused, never unpickled) and a config asking for custom code is refused. A missing or
    unreadable checkpoint is one `FreePropInputError` naming the class and the path (no traceback).
    transformers' long load reports are silenced (a vision tower read from a full CLIP folder would
    otherwise list every text key as unexpected).
    """
    from transformers.utils import logging

    if folder := _STAGING_DIR.get():
        path = staged(path, folder)
    refuse_custom_code(path, kwargs.get("subfolder"))
    if holds_weights(cls):
        kwargs.setdefault("use_safetensors", True)
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        obj = cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise FreePropInputError(
            f"cannot load {cls.__name__} from {path} ({(str(err).splitlines() or [''])[0][:120]}); "
            "download it (huggingface-cli download) or pass a local folder"
        ) from None
    finally:
        logging.set_verbosity(verbosity)
    return obj.to(device, dtype) if device is not None or dtype is not None else obj


def check_available(path: str, key: str) -> None:
    """Raise one clear error if `path` is neither a local file/folder nor a Hugging Face id in the cache."""
    if _local_source(path) is not None:
        return
    hint = f"huggingface-cli download {path}" if _looks_like_hub_id(path) else "check the path"
    raise FreePropInputError(f"{key}: {path} is not a local path nor in the Hugging Face cache ({hint})")


@contextmanager
def staging(folder: str | os.PathLike | None) -> Iterator[None]:
    """Within the block, `load_pretrained` loads from node-local copies under `folder` (None: off)."""
    token = _STAGING_DIR.set(str(folder) if folder else None)
    try:
        yield
    finally:
        _STAGING_DIR.reset(token)


def staged(path: str, folder: str | os.PathLike) -> str:
    """A copy of the model at `path` (a local file or folder, or a Hugging Face id in the cache) in
    `folder`, made once: concurrent callers on one node wait on a file lock while the first copies
    (into a partial folder, renamed when whole). The copy's name carries a signature of the source's
    files (names, sizes, times), so changed weights are staged anew. A path that cannot be resolved
    is returned as is, for `from_pretrained` to report."""
    import fcntl

    source = _local_source(path)
    if source is None:
        return path
    files = sorted(source.rglob("*")) if source.is_dir() else [source]
    signature = hashlib.sha1(str(source.resolve()).encode())
    for file in files:
        stat = file.stat()
        signature.update(f"{file.relative_to(source.parent)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{source.name}-{signature.hexdigest()[:12]}"
    target = root / name
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes (or the process dies)
        if not target.exists():
            partial = root / f".{name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            _copy(source, partial)
            partial.rename(target)
    return str(target if source.is_dir() else target / source.name)


def _copy(source: Path, partial: Path) -> None:
    """Copy a model folder (symlinks of the Hugging Face cache followed) or file into `partial`."""
    if source.is_dir():
        shutil.copytree(source, partial, symlinks=False)
    else:
        partial.mkdir()
        shutil.copy2(source, partial / source.name)


def _local_source(path: str) -> Path | None:
    """The local file or folder behind `path`: itself, or the cached snapshot of a Hugging Face id."""
    if Path(path).exists():
        return Path(path)
    if not _looks_like_hub_id(path):
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception:  # not in the cache
        return None


def _looks_like_hub_id(path: str) -> bool:
    return path.count("/") == 1 and not path.startswith((".", "/", "~"))
