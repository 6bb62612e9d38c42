import math

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor, WanRotaryPosEmbed

from freeprop.models.ast_rope import (
    SPATIAL,
    TEMPORAL,
    AlphaPredictor,
    ASTRoPEAttnProcessor,
    ASTRotaryPosEmbed,
    apply_ast_rope,
    ast_temporal_positions,
    default_head_map,
    head_map_to_tensor,
    rope_split,
)


def integer_positions(batch, frames):
    return torch.arange(frames, dtype=torch.float32).expand(batch, 2, frames)


def test_rope_split_matches_wan():
    assert rope_split(128) == (44, 42, 42)
    assert rope_split(12) == (4, 4, 4)
    rope = WanRotaryPosEmbed(128, (1, 2, 2), 64)
    assert (rope.t_dim, rope.h_dim, rope.w_dim) == rope_split(128)


def test_ast_temporal_positions_hand_case():
    pos = ast_temporal_positions(torch.tensor([0.5, 0.0]), torch.tensor([2.0, 1.0]), 4)
    torch.testing.assert_close(pos[0, SPATIAL], torch.tensor([2.0, 1, 2, 3]))  # α_S·F' = 0.5·4
    torch.testing.assert_close(pos[0, TEMPORAL], torch.tensor([0.0, 2, 4, 6]))  # α_T·[0..3]
    torch.testing.assert_close(pos[1], integer_positions(1, 4)[0])  # α_S=0, α_T=1 → plain RoPE


@pytest.mark.parametrize("head_dim,frames,height,width", [(12, 3, 4, 5), (128, 5, 3, 2)])
def test_integer_positions_reproduce_diffusers_attention_exactly(head_dim, frames, height, width):
    """The same WanAttention module with diffusers' processor + RoPE vs ours: identical outputs."""
    heads = 3
    attn = WanAttention(dim=heads * head_dim, heads=heads, dim_head=head_dim, eps=1e-6).eval()
    x = torch.randn(2, frames * height * width, heads * head_dim)
    wan_rope = WanRotaryPosEmbed(head_dim, (1, 2, 2), 64)(torch.zeros(1, 1, frames, 2 * height, 2 * width))
    head_types = torch.tensor([[SPATIAL, TEMPORAL, SPATIAL]])
    ours = ASTRotaryPosEmbed(head_dim)(integer_positions(2, frames), height, width, head_types)
    with torch.no_grad():
        attn.set_processor(WanAttnProcessor())
        expected = attn(x, None, None, wan_rope)
        attn.set_processor(ASTRoPEAttnProcessor(0))
        actual = attn(x, None, None, ours)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)  # FMA rounding only


def test_fractional_positions_match_complex_rotation():
    """Rotation per head = x as complex pairs times exp(i·pos·θ_axis), computed independently in float64."""
    head_dim, frames, height, width = 12, 4, 2, 3
    t_dim, h_dim, w_dim = rope_split(head_dim)
    alpha_s, alpha_t = torch.tensor([0.3]), torch.tensor([1.7])
    head_types = torch.tensor([[TEMPORAL, SPATIAL]])
    rope = ASTRotaryPosEmbed(head_dim)(
        ast_temporal_positions(alpha_s, alpha_t, frames), height, width, head_types
    )
    x = torch.randn(1, frames * height * width, 2, head_dim)
    out = apply_ast_rope(x, rope, layer=0)

    def inv(dim):
        return 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)

    time_pos = {TEMPORAL: [1.7 * f for f in range(frames)], SPATIAL: [0.3 * frames, 1.0, 2.0, 3.0]}
    xc = torch.view_as_complex(x.double().reshape(1, -1, 2, head_dim // 2, 2))
    expected = torch.empty_like(xc)
    for head, kind in enumerate(head_types[0].tolist()):
        s = 0
        for f in range(frames):
            for h in range(height):
                for w in range(width):
                    angle = torch.cat([time_pos[kind][f] * inv(t_dim), h * inv(h_dim), w * inv(w_dim)])
                    expected[0, s, head] = xc[0, s, head] * torch.polar(torch.ones_like(angle), angle)
                    s += 1
    torch.testing.assert_close(out.double(), torch.view_as_real(expected).flatten(-2), atol=1e-5, rtol=1e-5)


def test_attention_depends_only_on_position_differences():
    """RoPE invariant: shifting every temporal position by the same amount leaves q·k unchanged."""
    head_types = torch.tensor([[TEMPORAL]])
    rope_embed = ASTRotaryPosEmbed(12)
    q, k = torch.randn(2, 1, 3 * 4, 1, 12).unbind(0)
    base = ast_temporal_positions(torch.zeros(1), torch.tensor([1.3]), 3)
    shifted = base + 2.75
    dots = []
    for pos in (base, shifted):
        rope = rope_embed(pos, 2, 2, head_types)
        dots.append(apply_ast_rope(q, rope, 0)[0, :, 0] @ apply_ast_rope(k, rope, 0)[0, :, 0].T)
    torch.testing.assert_close(dots[0], dots[1], atol=1e-5, rtol=1e-5)


def test_gradients_reach_alpha_through_rope():
    alpha_s = torch.tensor([0.2], requires_grad=True)
    alpha_t = torch.tensor([1.5], requires_grad=True)
    head_types = torch.tensor([[SPATIAL, TEMPORAL]])
    x = torch.randn(1, 3 * 2 * 2, 2, 12)
    weights = torch.randn_like(x)

    def loss_fn(a_s, a_t):
        rope = ASTRotaryPosEmbed(12)(ast_temporal_positions(a_s, a_t, 3), 2, 2, head_types)
        return (apply_ast_rope(x, rope, 0) * weights).sum()

    loss_fn(alpha_s, alpha_t).backward()
    eps = 1e-3
    with torch.no_grad():
        fd_s = (loss_fn(alpha_s + eps, alpha_t) - loss_fn(alpha_s - eps, alpha_t)) / (2 * eps)
        fd_t = (loss_fn(alpha_s, alpha_t + eps) - loss_fn(alpha_s, alpha_t - eps)) / (2 * eps)
    assert alpha_s.grad.abs() > 1e-3 and alpha_t.grad.abs() > 1e-3
    torch.testing.assert_close(alpha_s.grad[0], fd_s, rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(alpha_t.grad[0], fd_t, rtol=2e-2, atol=2e-3)


def test_alpha_predictor_starts_at_identity_and_is_bounded():
    predictor = AlphaPredictor(16, dim=32, num_layers=1, num_heads=2, pool=2, alpha_t_max=4.0)
    z = torch.randn(3, 16, 5, 6, 6) * 3
    alpha_s, alpha_t = predictor(z)
    assert torch.equal(alpha_s, torch.zeros(3)) and torch.equal(alpha_t, torch.ones(3))
    # Latents smaller than the pool grid still work.
    assert predictor(torch.randn(1, 16, 2, 1, 1))[0].shape == (1,)
    with torch.no_grad():
        predictor.head_s.bias.fill_(100.0)
        predictor.head_t.bias.fill_(-100.0)
    alpha_s, alpha_t = predictor(z)
    torch.testing.assert_close(alpha_s, torch.ones(3))  # tanh saturates at 1
    torch.testing.assert_close(alpha_t, torch.full((3,), 0.25))  # 4 ** -1
    with pytest.raises(ValueError):
        AlphaPredictor(16, alpha_t_max=1.0)


def test_alpha_predictor_responds_to_motion():
    """Once trained weights are non-zero, videos with different content get different α."""
    predictor = AlphaPredictor(4, dim=16, num_layers=1, num_heads=2, pool=2)
    torch.nn.init.normal_(predictor.head_s.weight)
    torch.nn.init.normal_(predictor.head_t.weight)
    still = torch.randn(1, 4, 1, 8, 8).expand(1, 4, 6, 8, 8)
    moving = torch.randn(1, 4, 6, 8, 8)
    a_still, a_moving = predictor(still), predictor(moving)
    assert not math.isclose(a_still[1].item(), a_moving[1].item(), abs_tol=1e-6)


def test_head_map_validation():
    table = head_map_to_tensor({"0": ["spatial", "temporal"], 1: ["temporal", "temporal"]}, 2, 2)
    assert table.tolist() == [[SPATIAL, TEMPORAL], [TEMPORAL, TEMPORAL]]
    assert head_map_to_tensor(default_head_map(2, 3), 2, 3).tolist() == [[0, 1, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="layers 0..1"):
        head_map_to_tensor({"0": ["spatial", "spatial"]}, 2, 2)
    with pytest.raises(ValueError, match="need 2 entries"):
        head_map_to_tensor({"0": ["spatial"], "1": ["spatial", "spatial"]}, 2, 2)
    with pytest.raises(ValueError, match="need 2 entries"):
        head_map_to_tensor({"0": ["spatial", "diagonal"], "1": ["spatial", "spatial"]}, 2, 2)


# --- α ranges and precision (paper §4.2) --------------------------------------------------------


def _predictor(alpha_s_range="unit", bias=0.0):
    from freeprop.models.ast_rope import AlphaPredictor

    torch.manual_seed(0)
    predictor = AlphaPredictor(12, dim=16, num_layers=1, num_heads=2, pool=2, alpha_s_range=alpha_s_range)
    torch.nn.init.normal_(predictor.head_s.weight, std=3.0)
    torch.nn.init.constant_(predictor.head_s.bias, bias)
    return predictor


def test_alpha_s_stays_in_zero_one_and_still_learns_at_zero():
    from freeprop.models.ast_rope import AlphaPredictor

    latents = torch.randn(64, 12, 3, 4, 4)
    fresh = AlphaPredictor(12, dim=16, num_layers=1, num_heads=2, pool=2)
    alpha_s, alpha_t = fresh(latents)
    assert torch.equal(alpha_s, torch.zeros(64)) and torch.equal(alpha_t, torch.ones(64))  # exact identity
    with torch.no_grad():
        centre = -torch.atanh(_predictor("signed")(latents)[0]).median().item()  # half the samples above 0
    alpha_s, _ = _predictor(bias=centre)(latents)
    assert alpha_s.min() == 0 and alpha_s.max() < 1 and (alpha_s > 0).any()
    signed, _ = _predictor("signed", bias=centre)(latents)
    assert signed.min() < 0 and torch.equal(alpha_s, signed.clamp(min=0))
    below = AlphaPredictor(12, dim=16, num_layers=1, num_heads=2, pool=2)
    torch.nn.init.constant_(below.head_s.bias, -0.5)  # every sample below the boundary: α_S = 0 ...
    alpha_s, _ = below(latents)
    assert torch.equal(alpha_s, torch.zeros(64))
    alpha_s.sum().backward()
    assert below.head_s.bias.grad.item() != 0  # ... and the gradient still reaches u_S


def test_alphas_are_float32_whatever_the_model_dtype_or_autocast():
    from freeprop.models import build_transformer

    model = build_transformer("tiny")
    torch.nn.init.normal_(model.alpha_predictor.head_s.weight, std=0.5)
    torch.nn.init.normal_(model.alpha_predictor.head_t.weight, std=0.5)
    latents = torch.randn(2, 12, 3, 8, 8).to(torch.bfloat16).float()  # representable in bf16
    reference = model.predict_alphas(latents)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = model.predict_alphas(latents)
    model.to(torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.alpha_predictor.parameters())
    assert model.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    cast = model.predict_alphas(latents.to(torch.bfloat16))
    for got in (autocast, cast):
        assert got[0].dtype == got[1].dtype == torch.float32
        assert torch.equal(got[0], reference[0]) and torch.equal(got[1], reference[1])
