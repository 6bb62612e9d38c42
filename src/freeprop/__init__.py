"""FreeProp: first-frame propagation video editing (FFP-300K, Wan2.1 Fun-Control + AST-RoPE).

The names below load on first use (PEP 562), so `import freeprop` (and the `freeprop` command's
start-up) does not pay for torch and diffusers until a model or a video is touched.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "FreePropInputError": "freeprop.errors",
    "FreePropPipeline": "freeprop.pipeline",
    "FreePropPipelineOutput": "freeprop.pipeline",
    "FreePropTransformer": "freeprop.models",
    "LatentCodec": "freeprop.codecs",
    "PixelCodec": "freeprop.codecs",
    "Video": "freeprop.video",
    "WanVAECodec": "freeprop.codecs",
    "read_image": "freeprop.video",
    "read_video": "freeprop.video",
    "standardize": "freeprop.video",
    "write_video": "freeprop.video",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'freeprop' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
