"""Load a `FreePropTransformer` from a preset name, a diffusers-format folder, or safetensors weights.

Loading is strict: a state dict must match the model exactly, and every missing key, unexpected key
and shape mismatch is reported in one error. Weights are read with safetensors only (no pickle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from freeprop.errors import FreePropInputError
from freeprop.models.presets import PRESETS, get_preset
from freeprop.models.transformer import FreePropTransformer


def check_state_dict(
    model: torch.nn.Module, state: dict[str, torch.Tensor], allow_missing: tuple[str, ...] = ()
) -> None:
    """Raise one `FreePropInputError` listing missing/unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(allow_missing)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", shapes),
    ):
        if items:
            shown = ", ".join(items[:5]) + (f", … ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise FreePropInputError("weights do not fit the model — " + "; ".join(problems))


def load_weights(
    model: torch.nn.Module, path: str | os.PathLike, allow_missing: tuple[str, ...] = ()
) -> None:
    """Load a `.safetensors` state dict into `model` strictly (see `check_state_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise FreePropInputError(f"{path}: weights file not found; pass a .safetensors file")
    if path.suffix != ".safetensors":
        raise FreePropInputError(
            f"{path}: only .safetensors weights are loaded (no pickle); convert the file"
        )
    state = load_file(str(path))
    check_state_dict(model, state, allow_missing)
    model.load_state_dict(state, strict=False)


def model_folder(path: Path) -> Path:
    """The folder holding the transformer's config.json: `path/transformer/` or `path` itself."""
    sub = path / "transformer"
    folder = sub if (sub / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise FreePropInputError(
            f"{path}: no config.json here or in transformer/; pass a diffusers-format folder"
        )
    return folder


def model_config(name_or_path: str | os.PathLike) -> dict:
    """The transformer config (as `FreePropTransformer` kwargs) of a preset or model folder, without loading weights."""
    spec = os.fspath(name_or_path)
    if spec in PRESETS:
        return get_preset(spec).transformer_kwargs()
    path = Path(spec)
    if not path.is_dir():
        raise FreePropInputError(
            f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a model folder; check the --model value"
        )
    return json.loads((model_folder(path) / "config.json").read_text())


def load_transformer(
    name_or_path: str | os.PathLike, weights: str | os.PathLike | None = None, torch_dtype=torch.float32
) -> FreePropTransformer:
    """A preset name (random weights, or `weights`), or a diffusers folder written by `save_pretrained`."""
    spec = os.fspath(name_or_path)
    if spec in PRESETS:
        from freeprop.models import build_transformer

        model = build_transformer(get_preset(spec))
        if weights is not None:
            load_weights(model, weights)
        return model if torch_dtype == torch.float32 else model.to(torch_dtype)
    model_config(spec)  # validates the path with a clear message
    model = FreePropTransformer.from_pretrained(model_folder(Path(spec)), torch_dtype=torch_dtype)
    if weights is not None:
        load_weights(model, weights)
    return model
