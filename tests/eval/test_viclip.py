"""ViCLIP on transformers' CLIP parts vs an independent reference in the original key layout."""

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from freeprop.errors import FreePropInputError
from freeprop.eval.metrics.viclip import ViCLIPConfig, ViCLIPScorer, load_viclip, viclip_frame_indices

TINY = ViCLIPConfig(
    image_size=28, patch_size=7, vision_width=32, vision_layers=2, vision_heads=4, num_frames=8,
    text_width=24, text_layers=2, text_heads=2, context_length=32, vocab_size=57, embed_dim=16,
)  # fmt: skip


class Block(nn.Module):  # the original residual block: fused-QKV nn.MultiheadAttention, QuickGELU MLP
    def __init__(self, width, heads, mask=None):
        super().__init__()
        self.attn, self.mask = nn.MultiheadAttention(width, heads), mask
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width)
            )
        )

    def forward(self, x):  # [L, B, C]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Resblocks(nn.Module):
    def __init__(self, width, layers, heads, mask=None):
        super().__init__()
        self.resblocks = nn.ModuleList(Block(width, heads, mask) for _ in range(layers))

    def forward(self, x):
        for block in self.resblocks:
            x = block(x)
        return x


class ReferenceViCLIP(nn.Module):
    """Written from the published architecture: Conv3d patches, (b t) n → (b n) t temporal embedding."""

    def __init__(self, c: ViCLIPConfig):
        super().__init__()
        grid = c.image_size // c.patch_size
        v = nn.Module()
        v.conv1 = nn.Conv3d(
            3, c.vision_width, (1, c.patch_size, c.patch_size), (1, c.patch_size, c.patch_size), bias=False
        )
        v.class_embedding = nn.Parameter(torch.randn(c.vision_width))
        v.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, c.vision_width))
        v.temporal_positional_embedding = nn.Parameter(torch.randn(1, c.num_frames, c.vision_width))
        v.ln_pre, v.ln_post = nn.LayerNorm(c.vision_width), nn.LayerNorm(c.vision_width)
        v.transformer = Resblocks(c.vision_width, c.vision_layers, c.vision_heads)
        v.proj = nn.Parameter(torch.randn(c.vision_width, c.embed_dim) * 0.1)
        t = nn.Module()
        mask = torch.full((c.context_length, c.context_length), float("-inf")).triu_(1)
        t.transformer = Resblocks(c.text_width, c.text_layers, c.text_heads, mask)
        t.token_embedding = nn.Embedding(c.vocab_size, c.text_width)
        t.positional_embedding = nn.Parameter(torch.randn(c.context_length, c.text_width) * 0.1)
        t.ln_final = nn.LayerNorm(c.text_width)
        t.text_projection = nn.Parameter(torch.randn(c.text_width, c.embed_dim) * 0.1)
        self.vision_encoder, self.text_encoder, self.temp = v, t, nn.Parameter(torch.tensor(0.01))
        for ln in (v.ln_pre, v.ln_post, t.ln_final):  # non-trivial norms so a swapped key shows
            nn.init.normal_(ln.weight, 1.0, 0.2), nn.init.normal_(ln.bias, 0.0, 0.2)

    def encode_video(self, video):  # [B, T, 3, S, S]
        v = self.vision_encoder
        x = v.conv1(video.permute(0, 2, 1, 3, 4))  # [B, C, T, g, g]
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        x = torch.cat([v.class_embedding + torch.zeros(b * t, 1, c), x], 1) + v.positional_embedding
        cls, x = x[:b, :1], x[:, 1:]
        x = (
            x.reshape(b, t, h * w, c).transpose(1, 2).reshape(b * h * w, t, c)
            + v.temporal_positional_embedding
        )
        x = torch.cat([cls, x.reshape(b, h * w * t, c)], 1)
        x = v.transformer(v.ln_pre(x).permute(1, 0, 2))
        return v.ln_post(x)[0] @ v.proj

    def encode_text(self, ids):
        t = self.text_encoder
        x = t.transformer((t.token_embedding(ids) + t.positional_embedding).permute(1, 0, 2)).permute(1, 0, 2)
        return t.ln_final(x)[torch.arange(len(ids)), ids.argmax(-1)] @ t.text_projection


@pytest.fixture(scope="module")
def reference_and_ours(tmp_path_factory):
    torch.manual_seed(0)
    ref = ReferenceViCLIP(TINY).eval()
    path = tmp_path_factory.mktemp("viclip") / "ViClip-tiny.pth"
    torch.save({"model": ref.state_dict()}, path)
    return ref, load_viclip(str(path), TINY), path


def test_viclip_matches_the_original_layout(reference_and_ours):
    ref, ours, _ = reference_and_ours
    video = torch.randn(2, 8, 3, 28, 28)
    ids = torch.randint(1, 55, (2, 32))
    ids[0, 10], ids[0, 11:], ids[1, 31] = 56, 56, 56  # <eot> = highest id; padded after it / truncated
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_video(video), ref.encode_video(video), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.encode_text(ids), ref.encode_text(ids), atol=1e-5, rtol=1e-5)


def test_viclip_loader_reports_a_wrong_checkpoint(reference_and_ours, tmp_path):
    ref, _, _ = reference_and_ours
    state = ref.state_dict()
    del state["vision_encoder.proj"]
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(FreePropInputError, match="missing keys: vision.proj"):
        load_viclip(str(tmp_path / "bad.pth"), TINY)
    with pytest.raises(FreePropInputError, match="not found"):
        load_viclip(str(tmp_path / "none.pth"), TINY)


def test_frame_indices_are_editverse_int_i_t_over_8():
    assert viclip_frame_indices(81) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert viclip_frame_indices(17) == [0, 2, 4, 6, 8, 10, 12, 14]


def test_scorer_is_100_cos_and_truncates_text_to_32_tokens(reference_and_ours, clip_tokenizer):
    from transformers import CLIPImageProcessor

    _, ours, _ = reference_and_ours
    tokenizer = clip_tokenizer
    assert len(tokenizer) == TINY.vocab_size
    processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    scorer = ViCLIPScorer(ours, tokenizer, processor)
    ids = scorer.tokenize("ab " * 100)[0]
    assert len(ids) == 32 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    frames = np.random.default_rng(0).integers(0, 255, (20, 40, 30, 3), dtype=np.uint8)
    video, text = scorer.video_embedding(frames), scorer.text_embedding("a red ball")
    with torch.no_grad():
        px = processor(images=[frames[i] for i in viclip_frame_indices(20)], return_tensors="pt")[
            "pixel_values"
        ]
        v = torch.nn.functional.normalize(ours.encode_video(px[None]), dim=-1)[0]
        t = torch.nn.functional.normalize(ours.encode_text(scorer.tokenize("a red ball")), dim=-1)[0]
    assert scorer.score(video, text) == pytest.approx(100 * float(v @ t), abs=1e-3)


def test_prompts_are_cleaned_as_the_official_tokenizer_cleans_them():
    """ftfy, HTML unescaped twice, whitespace collapsed — before BPE (transformers' CLIPTokenizer alone
    leaves `&amp;` and mojibake in, so 4 of 9 test prompts tokenised differently)."""
    from freeprop.eval.metrics.viclip import clean_text

    assert clean_text("a cat &amp;amp; a dog") == "a cat & a dog"
    assert clean_text("  caf\u00c3\u00a9\n\tscene ") == "caf\u00e9 scene"
    assert clean_text("plain words") == "plain words"


def test_pickscore_shrinks_with_truncated_sizes():
    from freeprop.eval.metrics.embedding import shrink_to

    frame = np.zeros((480, 832, 3), np.uint8)  # Wan 480p: 480·672/832 = 387.69…
    h, w = shrink_to(frame, 672).shape[:2]
    assert (h, w) == (387, 672)  # rounding would give 388
