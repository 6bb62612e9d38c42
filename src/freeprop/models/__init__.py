"""FreeProp models: the Wan2.1-based transformer with AST-RoPE, presets and head classification."""

from freeprop.models.presets import PRESETS, FreePropConfig, get_preset
from freeprop.models.transformer import (
    FreePropTransformer,
    build_ffp_input,
    expand_input_channels,
    first_frame_mask,
)


def build_transformer(config: FreePropConfig | str, **overrides) -> FreePropTransformer:
    """A randomly initialised `FreePropTransformer` from a preset name or a `FreePropConfig`."""
    if isinstance(config, str):
        config = get_preset(config, **overrides)
    elif overrides:
        config = config.replace(**overrides)
    return FreePropTransformer(**config.transformer_kwargs())


__all__ = [
    "PRESETS",
    "FreePropConfig",
    "FreePropTransformer",
    "build_ffp_input",
    "build_transformer",
    "expand_input_channels",
    "first_frame_mask",
    "get_preset",
]
