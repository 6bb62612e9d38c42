"""The paper's embedding metrics (§5.1, Table 1), as EditVerse's evaluation code computes them.

- CLIP / DINO temporal consistency: per frame the CLIP ViT-L/14 vision `pooler_output` (before the
  visual projection) or the DINOv2-base `pooler_output`, L2-normalised; the score is
  mean_{t≥1} max(0, cos(f_t, f_{t−1})) over all frames of the *edited* video, a fraction (0.991).
- Frame text alignment: CLIP ViT-L/14 projected image and text embeddings, logit_scale.exp()·cos
  with the *target prompt* (text padded/truncated to 77 tokens), mean over all frames. The
  reference code multiplies by the checkpoint's logit scale, which is 100 for OpenAI's CLIP, so
  this is the 100·cos the paper reports (28.3).
- PickScore: the same with PickScore_v1 and the CLIP-H processor, each frame first shrunk so
  that max(h, w) ≤ 672 (as the reference code does).

Preprocessing is the Hugging Face processor saved with each checkpoint (short side → 224 bicubic and
centre crop for CLIP; short side 256 → centre crop 224 for DINOv2's BitImageProcessor), exactly
as the reference code. Every scorer takes its (model, processor) pair injected — tests build tiny
random ones from `CLIPConfig` / `Dinov2Config`; `load_*` builds the real ones from a local folder
or a Hugging Face id already in the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from freeprop.hub import load_pretrained

CLIP_L14 = "openai/clip-vit-large-patch14"  # CLIP temporal consistency and Frame text alignment
DINOV2_BASE = "facebook/dinov2-base"  # DINO temporal consistency
PICKSCORE = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
PICKSCORE_MAX_SIDE = 672


def temporal_consistency(features: np.ndarray | torch.Tensor) -> float:
    """mean_{t≥1} max(0, cos(f_t, f_{t−1})) for per-frame features [T, D]; 1.0 for a static video."""
    f = F.normalize(torch.as_tensor(np.asarray(features), dtype=torch.float64), dim=-1)
    if len(f) < 2:
        return 1.0
    return float((f[1:] * f[:-1]).sum(-1).clamp(min=0).mean())


def _pooled(output) -> torch.Tensor:
    """Tensor from `get_*_features` (a tensor in transformers 4, a pooled output in 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def shrink_to(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (PIL bicubic) so that max(h, w) ≤ max_side; smaller frames are returned as is.
    Sizes truncate, as the official PickScore evaluation's `int(...)` does (rounding differs at 832×480)."""
    from PIL import Image

    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.BICUBIC))


class _Scorer:
    """A model + processor on one device, run over frames in batches under no_grad."""

    def __init__(self, model, processor, name: str, batch_size: int = 16):
        self.model, self.processor, self.name, self.batch_size = model.eval(), processor, name, batch_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _pixels(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        processor = getattr(self.processor, "image_processor", self.processor)
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        return pixels.to(self.device, self.dtype)

    @torch.no_grad()
    def _batched(self, frames: Sequence[np.ndarray], embed) -> np.ndarray:
        chunks = [
            embed(self._pixels(frames[i : i + self.batch_size]))
            for i in range(0, len(frames), self.batch_size)
        ]
        return F.normalize(torch.cat(chunks).float(), dim=-1).cpu().numpy()


class ImageEmbedder(_Scorer):
    """Per-frame `pooler_output` of a vision backbone (CLIPVisionModel, CLIPModel, Dinov2Model), normalised."""

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:  # [T, D]
        backbone = getattr(self.model, "vision_model", self.model)  # a CLIPModel's tower, before projection
        return self._batched(frames, lambda px: backbone(pixel_values=px).pooler_output)


class TextImageScorer(_Scorer):
    """CLIP-style text–image alignment: logit_scale.exp()·cos(image, text) per frame (Frame, PickScore)."""

    def __init__(self, model, processor, name: str, max_side: int | None = None, batch_size: int = 16):
        super().__init__(model, processor, name, batch_size)
        self.max_side = max_side

    def image_embeddings(self, frames: Sequence[np.ndarray]) -> np.ndarray:  # [T, D_proj]
        if self.max_side:
            frames = [shrink_to(f, self.max_side) for f in frames]
        return self._batched(frames, lambda px: _pooled(self.model.get_image_features(pixel_values=px)))

    @torch.no_grad()
    def text_embedding(self, text: str) -> np.ndarray:  # [D_proj]
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        max_length = min(
            getattr(tokenizer, "model_max_length", 77), self.model.config.text_config.max_position_embeddings
        )
        ids = tokenizer(
            [text], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
        )
        ids = {k: v.to(self.device) for k, v in ids.items() if k in ("input_ids", "attention_mask")}
        return F.normalize(_pooled(self.model.get_text_features(**ids)).float(), dim=-1)[0].cpu().numpy()

    @property
    def scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())  # 100 for OpenAI CLIP and PickScore_v1

    def per_frame(self, image_embeddings: np.ndarray, text_embedding: np.ndarray) -> np.ndarray:
        return self.scale * (
            np.asarray(image_embeddings, np.float64) @ np.asarray(text_embedding, np.float64)
        )

    def score(self, image_embeddings: np.ndarray, text_embedding: np.ndarray) -> float:
        """Mean over frames of logit_scale.exp()·cos (the paper's Frame / Pick columns)."""
        return float(self.per_frame(image_embeddings, text_embedding).mean())


def pillow_processor(processor):
    """The Pillow-backed twin of an image processor (or of a processor's `image_processor`).

    EditVerse's numbers were made with transformers' Pillow resampling; with torchvision installed,
    transformers picks torchvision resampling instead (up to 11 grey levels apart), so the metrics
    always use the Pillow classes. `processor_backend` names what was used (recorded in the report)."""
    import transformers

    inner = getattr(processor, "image_processor", processor)
    name = type(inner).__name__
    if not name.endswith("Pil"):
        twin = getattr(transformers, name.removesuffix("Fast") + "Pil", None)
        if twin is not None:
            inner = twin(**inner.to_dict())
    if inner is not getattr(processor, "image_processor", processor):
        if hasattr(processor, "image_processor"):
            processor.image_processor = inner
        else:
            processor = inner
    return processor


def processor_backend(processor) -> str:
    return type(getattr(processor, "image_processor", processor)).__name__


def load_clip_embedder(path: str = CLIP_L14, device="cpu", dtype=torch.float32) -> ImageEmbedder:
    from transformers import CLIPImageProcessor, CLIPVisionModel

    model, processor = (
        load_pretrained(CLIPVisionModel, path, device, dtype),
        pillow_processor(load_pretrained(CLIPImageProcessor, path)),
    )
    return ImageEmbedder(model, processor, name=f"clip-vision:{path}")


def load_dino_embedder(path: str = DINOV2_BASE, device="cpu", dtype=torch.float32) -> ImageEmbedder:
    from transformers import AutoImageProcessor, Dinov2Model

    model, processor = (
        load_pretrained(Dinov2Model, path, device, dtype),
        pillow_processor(load_pretrained(AutoImageProcessor, path)),
    )
    return ImageEmbedder(model, processor, name=f"dinov2:{path}")


def load_clip_scorer(path: str = CLIP_L14, device="cpu", dtype=torch.float32) -> TextImageScorer:
    from transformers import CLIPModel, CLIPProcessor

    model, processor = load_pretrained(CLIPModel, path, device, dtype), load_pretrained(CLIPProcessor, path)
    return TextImageScorer(model, pillow_processor(processor), name=f"clip:{path}")


def load_pickscore(
    path: str = PICKSCORE, processor: str = PICKSCORE_PROCESSOR, device="cpu", dtype=torch.float32
) -> TextImageScorer:
    """PickScore_v1 weights with the CLIP-H processor (the checkpoint ships none of its own)."""
    from transformers import CLIPModel, CLIPProcessor

    model, proc = load_pretrained(CLIPModel, path, device, dtype), load_pretrained(CLIPProcessor, processor)
    return TextImageScorer(model, pillow_processor(proc), name=f"pickscore:{path}", max_side=PICKSCORE_MAX_SIDE)
