"""Loading pretrained parts (transformers / diffusers `from_pretrained`) with one clear error."""

from __future__ import annotations

from freeprop.errors import FreePropInputError


def holds_weights(cls) -> bool:
    """A model class (diffusers or transformers), as opposed to a processor, tokenizer or scheduler."""
    from diffusers import DiffusionPipeline, ModelMixin
    from transformers import PreTrainedModel

    return isinstance(cls, type) and issubclass(cls, (ModelMixin, DiffusionPipeline, PreTrainedModel))


def refuse_custom_code(path, subfolder: str | None = None) -> None:
    """A local folder whose config asks for custom code (`auto_map`, `_class_name` from a file) is refused:
    FreeProp never runs code shipped with weights."""
    from pathlib import Path

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
