"""FreeProp: first-frame propagation video editing (FFP-300K, Wan2.1 Fun-Control + AST-RoPE)."""

from freeprop.codecs import LatentCodec, PixelCodec, WanVAECodec
from freeprop.errors import FreePropInputError
from freeprop.models import FreePropTransformer
from freeprop.pipeline import FreePropPipeline, FreePropPipelineOutput
from freeprop.video import Video, read_image, read_video, standardize, write_video

__version__ = "0.1.0"

__all__ = [
    "FreePropInputError",
    "FreePropPipeline",
    "FreePropPipelineOutput",
    "FreePropTransformer",
    "LatentCodec",
    "PixelCodec",
    "Video",
    "WanVAECodec",
    "read_image",
    "read_video",
    "standardize",
    "write_video",
]
