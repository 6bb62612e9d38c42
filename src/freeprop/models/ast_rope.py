"""Adaptive Spatio-Temporal RoPE (AST-RoPE), paper §4.2.

Three pieces:

1. `ASTRotaryPosEmbed` — Wan's 3-D RoPE computed *on the fly from (possibly fractional) positions*
   instead of slicing an integer table. The head dim is split t|h|w exactly as diffusers'
   `WanRotaryPosEmbed` (h = w = 2·(Dh // 6), t = rest; 44/42/42 for Dh = 128) with the same
   interleaved pair layout and per-axis inverse frequencies, so integer positions reproduce diffusers
   (to float32 rounding). Angles are formed in float64 (float32 on MPS), as diffusers builds its
   table, then cast to float32; the tables are tiny (B × F' × pairs), so this costs nothing.
2. `AlphaPredictor` — a lightweight transformer over pooled source-latent tokens followed by a
   two-head MLP that predicts, per sample, the spatial factor α_S and the temporal factor α_T.
3. `ASTRoPEAttnProcessor` — Wan self-attention that rotates each head with the positions of its type
   (spatial or temporal, from the head map of paper §8.1), then dispatches to diffusers' attention
   backends (SDPA, flash, sage, ...). Cross-attention keeps diffusers' own processor.

Temporal positions (paper §4.2), per sample, for F' latent frames:
    spatial heads  H_S:  [α_S·F', 1, 2, …, F'−1]     (the first frame moves closer to every frame)
    temporal heads H_T:  [0, α_T, 2α_T, …, α_T(F'−1)]  (the time axis is stretched or compressed)
The h/w positions are the usual integer grid.

Why rotation only touches the t part per head: positions differ between head types only along time,
and the temporal angle depends only on the frame index. So the per-head tables are `(B, F', H, t/2)`
and are broadcast over the H'·W' tokens of each frame; nothing of size `S × H × Dh` is built.
Rotations are complex multiplications (as in the original Wan code), ~2× faster on CPU than
diffusers' strided real-valued form (benchmarks/bench_ast_rope.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import _get_qkv_projections

SPATIAL, TEMPORAL = 0, 1  # head-type codes used in `head_types` tensors


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels given to (t, h, w), as diffusers' `WanRotaryPosEmbed`: 44/42/42 for 128, 4/4/4 for 12."""
    h_dim = w_dim = 2 * (head_dim // 6)
    return head_dim - h_dim - w_dim, h_dim, w_dim


def _angle_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _inverse_frequencies(dim: int, theta: float, device, dtype) -> torch.Tensor:
    """1 / θ^(2i/dim), i = 0 … dim/2−1 (each axis normalised by its own dim, as Wan and diffusers)."""
    return 1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=dtype) / dim)


ALPHA_S_RANGES = ("unit", "signed")  # α_S ∈ [0, 1) (the paper's mechanism) or tanh's (−1, 1) (legacy)


def ast_temporal_positions(alpha_s: torch.Tensor, alpha_t: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Per-sample temporal positions for both head types (paper §4.2).

    Args:
        alpha_s, alpha_t: `[B]` scaling factors.
        num_frames: F', the number of latent frames.

    Returns:
        `[B, 2, F']`: row `SPATIAL` = [α_S·F', 1, …, F'−1]; row `TEMPORAL` = α_T·[0, 1, …, F'−1].
    """
    frames = torch.arange(num_frames, device=alpha_s.device, dtype=alpha_s.dtype)  # (F',)
    batch = alpha_s.shape[0]
    spatial = torch.cat([alpha_s[:, None] * num_frames, frames[1:].expand(batch, -1)], dim=1)  # (B, F')
    temporal = alpha_t[:, None] * frames  # (B, F')
    return torch.stack([spatial, temporal], dim=1)  # (B, 2, F')


class ASTRotaryPosEmbed(nn.Module):
    """Wan 3-D RoPE from arbitrary float temporal positions, one set per head type.

    `forward` returns the tuple handed opaquely through diffusers' Wan blocks to the processors, as
    unit complex numbers e^{i·angle} (complex64):
        freqs_t:  `(B, L, F', 1, H, t/2)`   temporal rotation per layer and head
        freqs_hw: `(1, 1, H'·W', 1, (h+w)/2)` spatial rotation shared by every head
    """

    def __init__(self, attention_head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.attention_head_dim = attention_head_dim
        self.theta = theta
        self.t_dim, self.h_dim, self.w_dim = rope_split(attention_head_dim)

    def forward(
        self,
        temporal_positions: torch.Tensor,
        height: int,
        width: int,
        head_types: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            temporal_positions: `[B, 2, F']` positions for (spatial, temporal) heads, float, may need grad.
            height, width: the post-patch token grid H', W'.
            head_types: `[L, H]` long tensor of `SPATIAL` / `TEMPORAL` codes.
        """
        device = temporal_positions.device
        dtype = _angle_dtype(device)
        # 1. Temporal angles per head type, then gathered per (layer, head).
        inv_t = _inverse_frequencies(self.t_dim, self.theta, device, dtype)  # (t/2,)
        angles_t = temporal_positions.to(dtype)[..., None] * inv_t  # (B, 2, F', t/2)
        per_head = angles_t[:, head_types]  # (B, L, H, F', t/2)
        per_head = per_head.permute(0, 1, 3, 2, 4).unsqueeze(3)  # (B, L, F', 1, H, t/2)

        # 2. Spatial angles on the integer (h, w) grid, frame-major token order like patch_embedding.
        inv_h = _inverse_frequencies(self.h_dim, self.theta, device, dtype)
        inv_w = _inverse_frequencies(self.w_dim, self.theta, device, dtype)
        angles_h = torch.arange(height, device=device, dtype=dtype)[:, None] * inv_h  # (H', h/2)
        angles_w = torch.arange(width, device=device, dtype=dtype)[:, None] * inv_w  # (W', w/2)
        angles_hw = torch.cat(
            [angles_h[:, None].expand(-1, width, -1), angles_w[None].expand(height, -1, -1)], dim=-1
        ).reshape(1, 1, height * width, 1, -1)  # (1, 1, H'·W', 1, (h+w)/2)
        return _unit_complex(per_head), _unit_complex(angles_hw)


def _unit_complex(angles: torch.Tensor) -> torch.Tensor:
    """e^{i·angle} as complex64, from cos/sin rounded to float32 (as diffusers' float32 tables)."""
    return torch.complex(angles.cos().float(), angles.sin().float())


def apply_ast_rope(x: torch.Tensor, rotary_emb: tuple, layer: int) -> torch.Tensor:
    """Rotate q or k `(B, S, H, Dh)` with layer `layer`'s per-head positions (see `ASTRotaryPosEmbed`).

    Channel pairs (2i, 2i+1) are read as complex numbers and multiplied by e^{i·angle} in float32:
    out₀ = x₀·cos − x₁·sin, out₁ = x₀·sin + x₁·cos, as diffusers' Wan `apply_rotary_emb` (which equals
    it up to fused multiply-add rounding) — but complex multiplies are ~2× faster on CPU.
    """
    freqs_t, freqs_hw = rotary_emb
    num_frames, t_pairs = freqs_t.shape[2], freqs_t.shape[-1]
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, S, H, Dh/2) complex
    pairs = pairs.unflatten(1, (num_frames, -1))  # (B, F', H'W', H, Dh/2)
    temporal = pairs[..., :t_pairs] * freqs_t[:, layer]  # per head: (B, F', H'W', H, t/2)
    spatial = pairs[..., t_pairs:] * freqs_hw  # shared by all heads: (B, F', H'W', H, (h+w)/2)
    out = torch.cat([temporal, spatial], dim=-1)  # (B, F', H'W', H, Dh/2)
    return torch.view_as_real(out).flatten(-2).flatten(1, 2).type_as(x)  # (B, S, H, Dh)


class ASTRoPEAttnProcessor:
    """Self-attention processor for `WanAttention` (attn1) with per-head-type AST-RoPE.

    Mirrors diffusers' `WanAttnProcessor` for self-attention: fused or separate QKV, RMS q/k norm
    across heads, RoPE, `dispatch_attention_fn` (so `set_attention_backend` keeps working), output proj.
    `capture` may be set to a callable `(layer, q, k)` to observe post-RoPE q/k (head classification).
    """

    _attention_backend = None
    _parallel_config = None

    def __init__(self, layer_index: int):
        self.layer_index = layer_index
        self.capture = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        query, key, value = _get_qkv_projections(attn, hidden_states, None)  # (B, S, H·Dh) each
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))  # (B, S, H, Dh)
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        if rotary_emb is not None:
            query = apply_ast_rope(query, rotary_emb, self.layer_index)
            key = apply_ast_rope(key, rotary_emb, self.layer_index)
        if self.capture is not None:
            self.capture(self.layer_index, query.detach(), key.detach())

        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )  # (B, S, H, Dh)
        hidden_states = hidden_states.flatten(2, 3).type_as(query)  # (B, S, H·Dh)
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


def _sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sinusoidal embedding `(N,) → (N, dim)` for frame indices."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device) / half)
    angles = positions.float()[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class AlphaPredictor(nn.Module):
    """Predict (α_S, α_T) per sample from the source latent z_src (paper §4.2).

    Source latents `[B, C, F', h, w]` are average-pooled to `pool × pool` tokens per frame, projected
    to `dim`, given a learned cell embedding plus a sinusoidal frame embedding, passed through a small
    pre-norm transformer encoder, mean-pooled, and fed to a shared MLP trunk with two scalar heads.

    Parametrisation (our choice; the paper does not give one) keeps both factors in the paper's
    ranges and makes a fresh predictor an exact identity on the RoPE:
        α_S = max(0, tanh(u_S))         ∈ [0, 1), 0 at init  → first frame at position α_S·F' (§4.2: α_S < 1
                                          brings it *closer* to the later frames; it never moves it before 0)
        α_T = alpha_t_max ** tanh(u_T)  ∈ (1/max, max), 1 at init → integer time steps
    The clamp passes the gradient straight through (a projected-gradient step), so u_S still learns at
    the boundary; `alpha_s_range="signed"` is the plain tanh ∈ (−1, 1) that models trained before this
    choice used (the bundled CPU model among them: its last stage ended at α_S ≈ −0.58). The two head layers are
    zero-initialised, so u_S = u_T = 0 exactly until training moves them.

    α are positions, so the predictor always runs in float32, outside autocast and whatever dtype the
    model is cast to (in bf16, α_S·F' at F' = 21 would be off by up to 0.04 positions).
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 256,
        num_layers: int = 2,
        num_heads: int = 4,
        pool: int = 4,
        alpha_t_max: float = 4.0,
        alpha_s_range: str = "unit",
    ):
        super().__init__()
        if alpha_t_max <= 1:
            raise ValueError(f"alpha_t_max must be > 1, got {alpha_t_max}")
        if alpha_s_range not in ALPHA_S_RANGES:
            raise ValueError(f"alpha_s_range must be one of {ALPHA_S_RANGES}, got {alpha_s_range!r}")
        self.pool, self.alpha_t_max, self.alpha_s_range = pool, alpha_t_max, alpha_s_range
        self.proj_in = nn.Linear(in_channels, dim)
        self.cell_embedding = nn.Parameter(torch.zeros(pool * pool, dim))
        layer = nn.TransformerEncoderLayer(
            dim,
            num_heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.trunk = nn.Sequential(nn.Linear(dim, dim), nn.SiLU())
        self.head_s = nn.Linear(dim, 1)
        self.head_t = nn.Linear(dim, 1)
        nn.init.normal_(self.cell_embedding, std=0.02)
        for head in (self.head_s, self.head_t):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _apply(self, fn, recurse=True):
        """Device moves apply; dtype casts do not (see the class docstring): the float32 values are kept."""
        before = {name: param.data for name, param in self.named_parameters()}
        super()._apply(fn, recurse)
        for name, param in self.named_parameters():
            if param.dtype != before[name].dtype:
                param.data = before[name].to(param.device)
        return self

    def forward(self, source_latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(source_latents.device.type, enabled=False):
            return self._alphas(source_latents.float())

    def _alphas(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, f, h, w = x.shape
        x = F.adaptive_avg_pool3d(x, (f, min(self.pool, h), min(self.pool, w)))  # (B, C, F', p, p)
        if x.shape[-2:] != (self.pool, self.pool):  # latents smaller than the pool grid
            x = F.interpolate(x, size=(f, self.pool, self.pool), mode="nearest")
        tokens = self.proj_in(x.flatten(3).permute(0, 2, 3, 1))  # (B, F', p², dim)
        frame_pos = _sinusoid(torch.arange(f, device=x.device), tokens.shape[-1]).to(tokens.dtype)
        tokens = tokens + self.cell_embedding + frame_pos[:, None]  # (B, F', p², dim)
        tokens = self.encoder(tokens.flatten(1, 2))  # (B, F'·p², dim)
        pooled = self.trunk(self.norm(tokens).mean(dim=1))  # (B, dim)
        alpha_s = torch.tanh(self.head_s(pooled)[:, 0])  # (B,)
        if self.alpha_s_range == "unit":  # clamp at 0, gradient straight through
            alpha_s = alpha_s + (alpha_s.clamp(min=0) - alpha_s).detach()
        alpha_t = self.alpha_t_max ** torch.tanh(self.head_t(pooled)[:, 0])  # (B,)
        return alpha_s, alpha_t


# ----------------------------------------------------------------------------------------------
# Head maps: {layer: ["spatial" | "temporal", ...]} (paper §8.1), as JSON and as a [L, H] tensor
# ----------------------------------------------------------------------------------------------

HEAD_TYPE_NAMES = ("spatial", "temporal")  # index = code (SPATIAL, TEMPORAL)


def default_head_map(num_layers: int, num_heads: int) -> dict[str, list[str]]:
    """Map used until heads are classified: even heads spatial, odd heads temporal in every layer.

    A neutral split for models trained from scratch (no pretrained specialisation to measure).
    For a pretrained backbone run `freeprop heads classify` and load its map instead.
    """
    return {str(layer): [HEAD_TYPE_NAMES[h % 2] for h in range(num_heads)] for layer in range(num_layers)}


def head_map_to_tensor(head_map: dict, num_layers: int, num_heads: int) -> torch.Tensor:
    """Validate a head map and turn it into a `[L, H]` long tensor of SPATIAL/TEMPORAL codes."""
    layers = {int(k): v for k, v in head_map.items()}
    if sorted(layers) != list(range(num_layers)):
        raise ValueError(f"head map must name layers 0..{num_layers - 1}, got {sorted(layers)}")
    table = torch.empty(num_layers, num_heads, dtype=torch.long)
    for layer, kinds in layers.items():
        if len(kinds) != num_heads or any(k not in HEAD_TYPE_NAMES for k in kinds):
            raise ValueError(
                f"head map layer {layer}: need {num_heads} entries of 'spatial'/'temporal', got {kinds}"
            )
        table[layer] = torch.tensor([HEAD_TYPE_NAMES.index(k) for k in kinds])
    return table
