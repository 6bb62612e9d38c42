"""Loading pretrained parts (transformers / diffusers `from_pretrained`) with one clear error."""

from __future__ import annotations

from freeprop.errors import FreePropInputError


def load_pretrained(cls, path: str, device=None, dtype=None, **kwargs):
    """`cls.from_pretrained(path, **kwargs)` — a local folder or a Hugging Face id already in the cache.

    A missing or unreadable checkpoint is one `FreePropInputError` naming the class and the path
    (no traceback). transformers' long load reports are silenced (a vision tower read from a full
    CLIP folder would otherwise list every text key as unexpected).
    """
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        obj = cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise FreePropInputError(
            f"cannot load {cls.__name__} from {path} ({str(err).splitlines()[0][:120]}); "
            "download it (huggingface-cli download) or pass a local folder"
        ) from None
    finally:
        logging.set_verbosity(verbosity)
    return obj.to(device, dtype) if device is not None or dtype is not None else obj


def check_available(path: str, key: str) -> None:
    """Raise one clear error if `path` is neither a local file/folder nor a Hugging Face id in the cache."""
    from pathlib import Path

    if Path(path).exists():
        return
    looks_like_id = path.count("/") == 1 and not path.startswith((".", "/", "~"))
    if looks_like_id:
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(path, local_files_only=True)
            return
        except Exception:  # not in the cache (or no huggingface_hub): fall through to the error
            pass
    hint = f"huggingface-cli download {path}" if looks_like_id else "check the path"
    raise FreePropInputError(f"{key}: {path} is not a local path nor in the Hugging Face cache ({hint})")
