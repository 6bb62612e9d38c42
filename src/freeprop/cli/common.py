"""Pieces shared by the command groups: argument types, device options, model names, input lists.

Nothing here imports torch at module level, so `freeprop --help` stays instant.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from freeprop.defaults import BUNDLED_MODEL, bundled_model_path
from freeprop.errors import FreePropInputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif", ".m4v"}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


# ----------------------------------------------------------------------------------------------
# Argument types: every size is HEIGHTxWIDTH, in input and in messages
# ----------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """`480x832` → (480, 832): HEIGHTxWIDTH, both ≥ 2."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must look like HEIGHTxWIDTH (e.g. 480x832), got {text!r}"
        ) from None
    if height < 2 or width < 2:
        raise argparse.ArgumentTypeError(f"size {text!r}: height and width must be at least 2 pixels")
    return height, width


def format_size(height: int, width: int) -> str:
    """The one way sizes are printed: HEIGHTxWIDTH, as `--size` takes them."""
    return f"{height}x{width}"


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def share(text: str) -> float:
    """A number from 0 to 1."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:  # `not ≥` also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


# ----------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------


def add_device_options(p: argparse.ArgumentParser) -> None:
    """--device / --dtype, read by `device_and_dtype`."""
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--dtype", choices=list(DTYPES), help="weights dtype (default: bf16 on cuda, fp32 on cpu)")


def device_and_dtype(device: str | None, dtype: str | None):
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FreePropInputError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise FreePropInputError("--device mps asked for, but MPS is not available; use --device cpu")
    dtype = dtype or ("bf16" if device.startswith("cuda") else "fp32")
    return torch.device(device), getattr(torch, DTYPES[dtype])


# ----------------------------------------------------------------------------------------------
# Models by name
# ----------------------------------------------------------------------------------------------


def resolve_model(model: str | None, weights: str | None = None, random_weights: bool = False) -> str:
    """A `--model` value → what `load_pipeline` takes.

    None or `bundled` is the shipped model. A preset name (`tiny`, `small`, `wan…`) builds a model
    from scratch, so without `--weights` it has random weights: refused unless `random_weights`.
    """
    from freeprop.models.presets import PRESETS

    if model in (None, BUNDLED_MODEL):
        path = bundled_model_path()
        if not (path / "model_index.json").is_file():
            raise FreePropInputError(f"the bundled model is missing from this install ({path}); reinstall")
        return str(path)
    if model in PRESETS and weights is None and not random_weights:
        raise FreePropInputError(
            f"--model {model} is a preset with random weights; use --model {BUNDLED_MODEL} (the trained model), "
            f"a model folder, or --weights FILE (add --random-weights to try the untrained preset)"
        )
    return model


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def sample_clips() -> list[Path]:
    """The procedural clips bundled with the package (used when no videos are given)."""
    folder = resources.files("freeprop") / "assets"
    return sorted(
        Path(str(p)) for p in folder.iterdir() if p.name.startswith("sample_") and p.name.endswith(".mp4")
    )


def collect_videos(paths: list[str]) -> list[Path]:
    videos: list[Path] = []
    for spec in paths:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise FreePropInputError(
                    f"{path}: no video files in this folder; pass videos or a folder of them"
                )
            videos.extend(found)
        elif path.exists():
            videos.append(path)
        else:
            raise FreePropInputError(f"{path}: no such file or folder; check the path")
    return videos


def codec_for(channels: int, vae: str | None = None):
    """The codec for `channels`-channel latents: the Wan VAE at `vae`, or PixelCodec(s) for 3·s² channels."""
    from freeprop.codecs import WanVAECodec, pixel_codec_for

    if vae:
        codec = WanVAECodec.from_pretrained(vae)
        if codec.latent_channels != channels:
            raise FreePropInputError(
                f"{vae}: VAE has {codec.latent_channels} latent channels, model needs {channels}"
            )
        return codec
    return pixel_codec_for(channels, "pass --vae PATH (a Wan2.1 VAE folder)")


def output_folder(path) -> Path:
    """A folder the command writes into, made if missing; a file in its place is one clear error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FreePropInputError(f"{path}: is a file; give a folder for the output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_output_folder(*paths) -> None:
    """Each output's folder must exist (we never create a user's folder tree by surprise)."""
    for path in paths:
        if path is not None and not Path(path).parent.resolve().is_dir():
            raise FreePropInputError(f"{path}: output folder {Path(path).parent} does not exist; create it first")
