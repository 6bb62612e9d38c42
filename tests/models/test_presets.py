import math

import pytest
import torch

from freeprop.errors import FreePropInputError
from freeprop.models import PRESETS, build_transformer, get_preset


def expected_parameter_count(cfg) -> int:
    """Hand count of diffusers' Wan DiT parameters for a config (AlphaPredictor excluded)."""
    D, L, ffn, T, fd, I = cfg.dim, cfg.num_layers, cfg.ffn_dim, cfg.text_dim, cfg.freq_dim, cfg.image_dim  # noqa: E741
    P = math.prod(cfg.patch_size)
    n = cfg.in_channels * P * D + D  # patch embedding
    n += fd * D + D + D * D + D + 6 * D * D + 6 * D  # time embedder + time projection
    n += T * D + D + D * D + D  # text projection
    if I:
        n += 2 * I + I * I + I + I * D + D + 2 * D  # CLIP image embedder (norm, MLP, norm)
    block = 2 * (4 * (D * D + D) + 2 * D)  # self- and cross-attention q/k/v/o + RMS q/k norms
    block += 2 * D + 2 * D * ffn + ffn + D + 6 * D  # cross-attn norm, FFN, modulation table
    if I:
        block += 2 * (D * D + D) + D  # image k/v projections + their norm
    return n + L * block + D * cfg.latent_channels * P + cfg.latent_channels * P + 2 * D


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts(name):
    cfg = get_preset(name)
    with torch.device("meta"):
        model = build_transformer(cfg)
    count = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("alpha_predictor"))
    assert count == expected_parameter_count(cfg)


def test_real_sizes():
    small, large = get_preset("wan2.1-fun-1.3b-control"), get_preset("wan2.1-fun-14b-control")
    assert (small.dim, small.num_attention_heads, small.num_layers, small.ffn_dim) == (1536, 12, 30, 8960)
    assert (large.dim, large.num_attention_heads, large.num_layers, large.ffn_dim) == (5120, 40, 40, 13824)
    assert small.in_channels == 48 + 4  # Fun-Control's 48 + the FreeProp mask M
    assert 1.5e9 < expected_parameter_count(small) < 1.6e9  # "1.3B" Wan + Fun-Control's CLIP image branch
    assert 16.3e9 < expected_parameter_count(large) < 16.5e9


def test_1p3b_preset_builds_and_runs_on_cpu():
    """The full-width 1.3B model with random weights: parameter count and a forward on a tiny latent."""
    cfg = get_preset("wan2.1-fun-1.3b-control")
    model = build_transformer(cfg).eval()
    assert sum(p.numel() for p in model.parameters()) == expected_parameter_count(cfg) + sum(
        p.numel() for p in model.alpha_predictor.parameters()
    )
    x = torch.randn(1, cfg.in_channels, 2, 4, 4)
    with torch.no_grad():
        out = model(x, torch.tensor([500]), torch.randn(1, 512, 4096), torch.randn(1, 257, 1280))
    assert out.sample.shape == (1, 16, 2, 4, 4) and torch.isfinite(out.sample).all()
    assert out.alpha_s.item() == 0.0 and out.alpha_t.item() == 1.0


def test_config_validation():
    with pytest.raises(FreePropInputError, match="unknown model preset"):
        get_preset("wan9")
    with pytest.raises(FreePropInputError, match="unknown model config key"):
        get_preset("tiny", num_layer=3)
    with pytest.raises(ValueError, match="num_layers"):
        get_preset("tiny", num_layers=0)
    with pytest.raises(ValueError, match="alpha_t_max"):
        get_preset("tiny", alpha_t_max=0.5)
    assert get_preset("tiny", num_layers=3).num_layers == 3
