"""ViCLIP (InternVid, Wang et al. 2023) for the paper's Video text alignment column (§5.1).

EditVerse scores Video = 100·cos(ViCLIP(video), ViCLIP(target prompt)) with ViCLIP-L/14
(`ViClip-InternVid-10M-FLT.pth`, HF `OpenGVLab/VBench_Used_Models`): 8 frames at int(i·T/8),
each resized (short side 224, bicubic), centre-cropped to 224 and CLIP-normalised; text in the
CLIP BPE vocabulary truncated to **32** tokens (the last kept token becomes end-of-text).

ViCLIP is not in transformers, but both towers are CLIP towers, so this module builds them from
transformers' CLIP parts and writes by hand only what ViCLIP adds:

- vision: a CLIP ViT-L/14 whose patch embedding runs on every frame, plus a learned temporal
  position embedding per frame; *all* T·N patch tokens and one class token attend jointly, and the
  class token after `ln_post` times `proj` is the video embedding;
- text: exactly a CLIP text transformer (causal mask, end-of-text pooling, projection) with a
  32-position table — `CLIPTextModelWithProjection`.

`load_viclip` reads the released checkpoint (`{"model": state_dict}`, OpenAI CLIP key layout with
fused `in_proj` attention), renames it onto these modules and reports missing / unexpected /
mis-shaped keys. The tokenizer is the CLIP tokenizer (same BPE as ViCLIP's `simple_tokenizer`),
e.g. the one saved with `openai/clip-vit-large-patch14`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViCLIPConfig:
    image_size: int = 224
    patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    num_frames: int = 8
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 32  # ViCLIP's max_txt_l
    vocab_size: int = 49408
    embed_dim: int = 768

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.vision_width % self.vision_heads or self.text_width % self.text_heads:
            raise ValueError("widths must be divisible by their head counts")

    def vision_config(self):
        from transformers import CLIPVisionConfig

        return CLIPVisionConfig(
            hidden_size=self.vision_width,
            intermediate_size=4 * self.vision_width,
            num_hidden_layers=self.vision_layers,
            num_attention_heads=self.vision_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        )

    def text_config(self):
        from transformers import CLIPTextConfig

        return CLIPTextConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.text_width,
            intermediate_size=4 * self.text_width,
            num_hidden_layers=self.text_layers,
            num_attention_heads=self.text_heads,
            max_position_embeddings=self.context_length,
            projection_dim=self.embed_dim,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            bos_token_id=self.vocab_size - 2,  # <|startoftext|>
            eos_token_id=self.vocab_size - 1,  # <|endoftext|>: pooled at its first occurrence
            pad_token_id=self.vocab_size - 1,
        )


VICLIP_L14 = ViCLIPConfig()


class ViCLIPVision(nn.Module):
    """CLIP ViT over a whole clip: per-frame patches + temporal positions, one joint encoder."""

    def __init__(self, config: ViCLIPConfig):
        super().__init__()
        from transformers.models.clip.modeling_clip import CLIPEncoder

        width, grid = config.vision_width, config.image_size // config.patch_size
        self.config = config
        self.patch = nn.Conv2d(3, width, config.patch_size, config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) * width**-0.5)
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, config.num_frames, width))
        self.ln_pre = nn.LayerNorm(width)
        self.encoder = CLIPEncoder(config.vision_config())
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, config.embed_dim) * width**-0.5)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        # video: [B, T, 3, S, S] normalised pixels
        b, t = video.shape[:2]
        x = self.patch(video.flatten(0, 1))  # [B·T, C, g, g]
        x = x.flatten(2).transpose(1, 2) + self.positional_embedding[1:]  # [B·T, N, C]
        if t == self.config.num_frames:
            temporal = self.temporal_positional_embedding[0]  # [T, C]
        elif t == 1:
            temporal = self.temporal_positional_embedding[0].mean(0, keepdim=True)  # as the original
        else:
            raise ValueError(f"ViCLIP takes {self.config.num_frames} frames (or 1), got {t}")
        x = x.unflatten(0, (b, t)) + temporal[None, :, None]  # [B, T, N, C]
        cls = (self.class_embedding + self.positional_embedding[0]).expand(b, 1, -1)  # [B, 1, C]
        x = torch.cat([cls, x.flatten(1, 2)], dim=1)  # [B, 1 + T·N, C]
        x = self.encoder(inputs_embeds=self.ln_pre(x)).last_hidden_state  # [B, 1 + T·N, C]
        return self.ln_post(x[:, 0]) @ self.proj  # [B, D]


class ViCLIP(nn.Module):
    def __init__(self, config: ViCLIPConfig = VICLIP_L14):
        super().__init__()
        from transformers import CLIPTextModelWithProjection

        self.config = config
        self.vision = ViCLIPVision(config)
        self.text = CLIPTextModelWithProjection(config.text_config())

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:  # [B, T, 3, S, S] → [B, D]
        return self.vision(video)

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:  # [B, L] → [B, D]
        return self.text(input_ids=input_ids).text_embeds


# --- the released checkpoint -------------------------------------------------------------------------

_BLOCK = {
    r"ln_1\.(weight|bias)": r"layer_norm1.\1",
    r"ln_2\.(weight|bias)": r"layer_norm2.\1",
    r"mlp\.c_fc\.(weight|bias)": r"mlp.fc1.\1",
    r"mlp\.c_proj\.(weight|bias)": r"mlp.fc2.\1",
    r"attn\.out_proj\.(weight|bias)": r"self_attn.out_proj.\1",
}


def _convert_block(rest: str, value: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    match = re.fullmatch(r"(\d+)\.attn\.in_proj_(weight|bias)", rest)
    if match:  # fused q|k|v → three projections
        layer, kind = match.groups()
        q, k, v = value.chunk(3, dim=0)
        return {f"{prefix}.layers.{layer}.self_attn.{n}_proj.{kind}": t for n, t in zip("qkv", (q, k, v))}
    layer, tail = rest.split(".", 1)
    for pattern, repl in _BLOCK.items():
        if re.fullmatch(pattern, tail):
            return {f"{prefix}.layers.{layer}.{re.sub(pattern, repl, tail)}": value}
    return {f"unknown.{prefix}.{rest}": value}


def convert_original_viclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original ViCLIP keys (`vision_encoder.*`, `text_encoder.*`) → this module's keys."""
    out: dict[str, torch.Tensor] = {}
    direct = {
        "vision_encoder.class_embedding": "vision.class_embedding",
        "vision_encoder.positional_embedding": "vision.positional_embedding",
        "vision_encoder.temporal_positional_embedding": "vision.temporal_positional_embedding",
        "vision_encoder.proj": "vision.proj",
        "text_encoder.token_embedding.weight": "text.text_model.embeddings.token_embedding.weight",
        "text_encoder.positional_embedding": "text.text_model.embeddings.position_embedding.weight",
    }
    for key, value in state.items():
        if key == "temp":  # the contrastive temperature: unused at evaluation (the score is 100·cos)
            continue
        if key in direct:
            out[direct[key]] = value
        elif key == "vision_encoder.conv1.weight":  # Conv3d with a temporal kernel of 1 → Conv2d
            out["vision.patch.weight"] = value[:, :, 0] if value.ndim == 5 else value
        elif key == "text_encoder.text_projection":  # [width, D] parameter → Linear weight [D, width]
            out["text.text_projection.weight"] = value.t()
        elif m := re.fullmatch(
            r"(vision_encoder|text_encoder)\.(ln_pre|ln_post|ln_final)\.(weight|bias)", key
        ):
            tower, norm, kind = m.groups()
            name = "text.text_model.final_layer_norm" if norm == "ln_final" else f"vision.{norm}"
            out[f"{name}.{kind}"] = value
        elif m := re.fullmatch(r"vision_encoder\.transformer\.resblocks\.(.+)", key):
            out |= _convert_block(m.group(1), value, "vision.encoder")
        elif m := re.fullmatch(r"text_encoder\.transformer\.resblocks\.(.+)", key):
            out |= _convert_block(m.group(1), value, "text.text_model.encoder")
        else:
            out[f"unknown.{key}"] = value  # reported as unexpected by the strict loader
    return out


def load_viclip(path: str, config: ViCLIPConfig = VICLIP_L14, device="cpu", dtype=torch.float32) -> ViCLIP:
    """The released checkpoint (`.pth` with a `model` dict, or `.safetensors`), strictly checked."""
    from pathlib import Path

    from freeprop.errors import FreePropInputError
    from freeprop.models.loading import check_state_dict

    if not Path(path).is_file():
        raise FreePropInputError(
            f"{path}: ViCLIP checkpoint not found; download ViClip-InternVid-10M-FLT.pth "
            "(HF OpenGVLab/VBench_Used_Models) and pass its path with --viclip"
        )
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    converted = convert_original_viclip(state)
    model = ViCLIP(config)
    try:
        check_state_dict(model, converted)
    except FreePropInputError as err:
        raise FreePropInputError(f"{path}: not a ViCLIP checkpoint of this config: {err}") from None
    model.load_state_dict(converted)
    return model.to(device, dtype).eval()


# --- the metric --------------------------------------------------------------------------------------


def viclip_frame_indices(num_frames: int, count: int = 8) -> list[int]:
    """EditVerse's sampling: [int(i·T/count) for i in range(count)]."""
    return [int(i * num_frames / count) for i in range(count)]


def clean_text(text: str) -> str:
    """The CLIP/ViCLIP tokenizer's own cleaning (`basic_clean` + `whitespace_clean`)."""
    import html
    import re

    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return re.sub(r"\s+", " ", text).strip()


class ViCLIPScorer:
    """Video text alignment: 100·cos(ViCLIP(8 frames), ViCLIP(text ≤ 32 tokens))."""

    def __init__(self, model: ViCLIP, tokenizer, image_processor, name: str = "viclip"):
        self.model, self.tokenizer, self.image_processor, self.name = (
            model.eval(),
            tokenizer,
            image_processor,
            name,
        )

    @property
    def _device_dtype(self):
        p = next(self.model.parameters())
        return p.device, p.dtype

    def tokenize(self, text: str) -> torch.Tensor:
        """CLIP BPE with <sot>/<eot>, truncated to the context length keeping <eot> last (as ViCLIP),
        after the official tokenizer's cleaning: ftfy, HTML unescaped twice, whitespace collapsed."""
        length = self.model.config.context_length
        ids = self.tokenizer(
            [clean_text(text)], truncation=True, max_length=length, padding="max_length", return_tensors="pt"
        )
        return ids["input_ids"]

    @torch.no_grad()
    def video_embedding(self, frames) -> np.ndarray:  # frames: uint8 [T, H, W, 3] → [D]
        device, dtype = self._device_dtype
        picked = [frames[i] for i in viclip_frame_indices(len(frames), self.model.config.num_frames)]
        pixels = self.image_processor(images=picked, return_tensors="pt")["pixel_values"]
        embedding = self.model.encode_video(pixels[None].to(device, dtype))
        return F.normalize(embedding.float(), dim=-1)[0].cpu().numpy()

    @torch.no_grad()
    def text_embedding(self, text: str) -> np.ndarray:  # [D]
        device, _ = self._device_dtype
        embedding = self.model.encode_text(self.tokenize(text).to(device))
        return F.normalize(embedding.float(), dim=-1)[0].cpu().numpy()

    @staticmethod
    def score(video_embedding: np.ndarray, text_embedding: np.ndarray) -> float:
        return float(100.0 * np.dot(video_embedding, text_embedding))


def load_viclip_scorer(
    path: str, tokenizer: str = "openai/clip-vit-large-patch14", device="cpu", dtype=torch.float32
) -> ViCLIPScorer:
    """ViCLIP-L/14 weights + the CLIP tokenizer, with a 224 CLIP image processor for the frames."""
    from transformers import CLIPImageProcessor, CLIPTokenizer

    from freeprop.hub import load_pretrained

    model = load_viclip(path, device=device, dtype=dtype)
    processor = CLIPImageProcessor(  # Resize(224, bicubic) → CenterCrop(224) → CLIP mean/std
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    return ViCLIPScorer(model, load_pretrained(CLIPTokenizer, tokenizer), processor, name=f"viclip:{path}")
