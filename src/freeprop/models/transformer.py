"""FreePropTransformer: diffusers' Wan2.1 DiT adapted for first-frame propagation (paper §4.1, §4.2).

A subclass of `diffusers.WanTransformer3DModel` (not a fork): the blocks, embeddings, LoRA support,
attention backends and `from_pretrained`/`save_pretrained` are diffusers'. FreeProp adds:

- **FFP conditioning by channel concatenation** (§4.1). The input `hidden_states` is
      [ z_t (C) | z_src (C) | ẑ zero-padded in time (C) | M (mask_channels) ]      channels
  where z_t is the noisy target latent, z_src the source-video latent, ẑ the edited first frame's
  latent placed at latent frame 0 and zeros elsewhere, and M the binary first-frame mask (1 on latent
  frame 0, 0 elsewhere; Wan-I2V style, one channel per pixel frame folded into a latent frame, i.e.
  4 for the Wan VAE). The first 3C channels are exactly Wan2.1 Fun-Control's layout
  (noise | control | start image, `in_dim=48`), so `expand_input_channels` can turn a Fun-Control
  checkpoint into a FreeProp model by adding zero-initialised `patch_embedding` channels for M.
- **AST-RoPE** (§4.2): per-sample α_S, α_T from the source latent, per-head-type temporal positions
  (see `ast_rope.py`), and a head map saying which heads are spatial or temporal (§8.1).
- Optional block features for the self-distillation losses (§4.3), collected in `forward` (not with
  hooks, which would re-fire under gradient checkpointing).

With `use_ast_rope=False` the model uses plain Wan RoPE (the paper's "Baseline" ablation). A freshly
built or expanded model computes exactly what the stock Wan model computes with the same weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput, apply_lora_scale

from freeprop.models.ast_rope import (
    AlphaPredictor,
    ASTRoPEAttnProcessor,
    ASTRotaryPosEmbed,
    ast_temporal_positions,
    default_head_map,
    head_map_to_tensor,
)


@dataclass
class FreePropTransformerOutput(BaseOutput):
    sample: torch.Tensor  # (B, C, F', h, w) predicted velocity
    alpha_s: torch.Tensor | None = None  # (B,)
    alpha_t: torch.Tensor | None = None  # (B,)
    features: dict[int, torch.Tensor] | None = None  # block index → (B, S, D) hidden states after that block


class FreePropTransformer(WanTransformer3DModel):
    """Wan2.1 DiT with FFP conditioning and AST-RoPE.

    Args (beyond `WanTransformer3DModel`'s):
        use_ast_rope: predict α_S, α_T and remap temporal positions per head type; False = plain Wan RoPE.
        head_map: `{layer: ["spatial"|"temporal", ...]}`; None = `default_head_map` (even/odd split).
        predictor_*: size of the `AlphaPredictor` (a few hundred thousand parameters at the defaults).
        alpha_t_max: α_T ranges over (1/alpha_t_max, alpha_t_max).
        alpha_s_range: "unit" — α_S ∈ [0, 1), the paper's mechanism — or "signed" (tanh, earlier models).
        predicts_residual: the flow's x₀ is z_tgt − z_src (see `target_latents`); False = z_tgt (the paper).
        prediction: the output is the velocity ("velocity", the paper) or x̂₀ ("sample"); see `velocity`.
    """

    _keep_in_fp32_modules = [*WanTransformer3DModel._keep_in_fp32_modules, "alpha_predictor"]
    _skip_layerwise_casting_patterns = [
        *WanTransformer3DModel._skip_layerwise_casting_patterns,
        "alpha_predictor",
    ]
    _cp_plan = None  # context parallelism splits diffusers' RoPE tables; ours have another layout

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = 52,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        use_ast_rope: bool = True,
        head_map: dict | None = None,
        predictor_dim: int = 256,
        predictor_layers: int = 2,
        predictor_heads: int = 4,
        predictor_pool: int = 4,
        alpha_t_max: float = 4.0,
        predicts_residual: bool = False,
        prediction: str = "velocity",
        alpha_s_range: str = "unit",
    ):
        if prediction not in ("velocity", "sample"):
            raise ValueError(f"prediction must be 'velocity' or 'sample', got {prediction!r}")
        if in_channels < 3 * out_channels:
            raise ValueError(
                f"in_channels={in_channels} < 3·out_channels={3 * out_channels}: FFP input needs noisy, source "
                "and first-frame latents (+ mask channels)"
            )
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            image_dim=image_dim,
            added_kv_proj_dim=added_kv_proj_dim,
            rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len,
        )
        self.ast_rope = ASTRotaryPosEmbed(attention_head_dim)
        self.alpha_predictor = AlphaPredictor(
            out_channels, predictor_dim, predictor_layers, predictor_heads, predictor_pool, alpha_t_max, alpha_s_range
        )
        self.register_buffer(
            "head_types", torch.zeros(num_layers, num_attention_heads, dtype=torch.long), persistent=False
        )
        self.set_head_map(head_map)
        for i, block in enumerate(self.blocks):
            block.attn1.set_processor(ASTRoPEAttnProcessor(i))

    # ------------------------------------------------------------------------------------------

    @property
    def latent_channels(self) -> int:
        return self.config.out_channels

    @property
    def mask_channels(self) -> int:
        return self.config.in_channels - 3 * self.config.out_channels

    def target_latents(self, x0: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """What the flow generates for target latents `x0` given source latents: x0, or x0 − source."""
        return x0 - source if self.config.predicts_residual else x0

    def output_latents(self, generated: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The target latents from what the flow generated (inverse of `target_latents`)."""
        return generated + source if self.config.predicts_residual else generated

    def velocity(self, output: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The flow velocity from the network's output: itself, or (x_t − x̂₀)/σ for a sample predictor."""
        if self.config.prediction == "velocity":
            return output
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=output.device).clamp(min=1e-3)
        sigma = sigma.view(-1, *[1] * (output.ndim - 1)) if sigma.ndim else sigma
        return (x_t.float() - output.float()) / sigma

    def init_buffers(self) -> None:
        """(Re)build the non-persistent buffers (RoPE tables, head types), e.g. after loading onto `meta`."""
        cfg = self.config
        self.rope = type(self.rope)(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len)
        self.register_buffer(
            "head_types",
            torch.zeros(cfg.num_layers, cfg.num_attention_heads, dtype=torch.long),
            persistent=False,
        )
        self.set_head_map(cfg.head_map)

    def set_head_map(self, head_map: dict | None) -> None:
        """Install a spatial/temporal head map (paper §8.1); it is saved in `config.json`."""
        n_layers, n_heads = self.config.num_layers, self.config.num_attention_heads
        head_map = head_map if head_map is not None else default_head_map(n_layers, n_heads)
        table = head_map_to_tensor(head_map, n_layers, n_heads)
        self.head_types.copy_(table.to(self.head_types.device))
        self.register_to_config(head_map={str(k): list(v) for k, v in head_map.items()})

    def set_ast_rope(self, enabled: bool) -> None:
        """Switch AST-RoPE on or off (off = plain Wan RoPE, the paper's Baseline ablation)."""
        self.register_to_config(use_ast_rope=bool(enabled))

    def predict_alphas(self, source_latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_S, α_T) per sample; (0, 1) — plain RoPE — when AST-RoPE is off."""
        if not self.config.use_ast_rope:
            batch = source_latents.shape[0]
            zeros = torch.zeros(batch, device=source_latents.device)
            return zeros, zeros + 1.0
        return self.alpha_predictor(source_latents)

    # ------------------------------------------------------------------------------------------

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        alphas: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_features: Sequence[int] = (),
        features_only: bool = False,
    ) -> FreePropTransformerOutput | tuple:
        """Predict the flow-matching velocity.

        Args:
            hidden_states: `(B, 3C + M, F', h, w)` FFP input (see `build_ffp_input`).
            timestep: `(B,)` in [0, 1000].
            encoder_hidden_states: `(B, L_text, text_dim)` text embeddings.
            encoder_hidden_states_image: `(B, 257, image_dim)` CLIP image tokens, if the model has an image branch.
            alphas: `(α_S, α_T)` each `(B,)`, overriding the predictor (tests, ablations, analysis).
            return_features: block indices whose output hidden states `(B, S, D)` are returned.
            features_only: stop after the last block in `return_features` (no `sample`); the
                distillation teacher needs nothing more.
        """
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        ppf, pph, ppw = frames // p_t, height // p_h, width // p_w
        c = self.config.out_channels

        # 1. AST-RoPE: α from the source latent z_src (channels C..2C), positions per head type.
        if alphas is None:
            alphas = self.predict_alphas(hidden_states[:, c : 2 * c])
        alpha_s, alpha_t = alphas
        positions = ast_temporal_positions(alpha_s.float(), alpha_t.float(), ppf)  # (B, 2, F')
        rotary_emb = self.ast_rope(positions, pph, ppw, self.head_types)

        # 2. Patch embedding and conditions (as diffusers).
        hidden_states = self.patch_embedding(hidden_states)  # (B, D, F', H', W')
        hidden_states = hidden_states.flatten(2).transpose(1, 2).contiguous()  # (B, S, D)
        ts_seq_len = timestep.shape[1] if timestep.ndim == 2 else None
        temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = self.condition_embedder(
            timestep.flatten(),
            encoder_hidden_states,
            encoder_hidden_states_image,
            timestep_seq_len=ts_seq_len,
        )
        timestep_proj = timestep_proj.unflatten(2 if ts_seq_len else 1, (6, -1))  # (B, 6, D)
        if encoder_hidden_states_image is not None:
            encoder_hidden_states = torch.concat([encoder_hidden_states_image, encoder_hidden_states], dim=1)

        # 3. Transformer blocks; the rotary tuple travels opaquely to each attn1 processor.
        features = {}
        wanted = set(return_features)
        for i, block in enumerate(self.blocks):
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states = self._gradient_checkpointing_func(
                    block, hidden_states, encoder_hidden_states, timestep_proj, rotary_emb
                )
            else:
                hidden_states = block(hidden_states, encoder_hidden_states, timestep_proj, rotary_emb)
            if i in wanted:
                features[i] = hidden_states  # (B, S, D)
                if features_only and len(features) == len(wanted):  # later blocks are not needed
                    return FreePropTransformerOutput(
                        sample=None, alpha_s=alpha_s, alpha_t=alpha_t, features=features
                    )

        # 4. Output norm, projection and unpatchify (as diffusers).
        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)  # (B, 1, D) each
        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = self.proj_out(hidden_states)  # (B, S, C·p_t·p_h·p_w)
        hidden_states = hidden_states.reshape(batch, ppf, pph, ppw, p_t, p_h, p_w, -1)
        output = (
            hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        )  # (B, C, F, H, W)

        if not return_dict:
            return (output, features) if wanted else (output,)
        return FreePropTransformerOutput(
            sample=output, alpha_s=alpha_s, alpha_t=alpha_t, features=features or None
        )


# ----------------------------------------------------------------------------------------------
# FFP input assembly (paper §4.1)
# ----------------------------------------------------------------------------------------------


def first_frame_mask(
    batch: int, mask_channels: int, frames: int, height: int, width: int, device=None, dtype=None
):
    """M: `(B, mask_channels, F', h, w)`, ones on latent frame 0, zeros elsewhere.

    Wan I2V builds its mask per pixel frame and folds the VAE's 4-frame temporal stride into 4
    channels; with only the first frame known, every channel of latent frame 0 is 1 and the rest 0.
    """
    mask = torch.zeros(batch, mask_channels, frames, height, width, device=device, dtype=dtype)
    mask[:, :, 0] = 1.0
    return mask


def build_ffp_input(
    noisy: torch.Tensor, source: torch.Tensor, first_frame: torch.Tensor, mask_channels: int
) -> torch.Tensor:
    """Concatenate `[z_t | z_src | ẑ zero-padded in time | M]` on channels (paper §4.1).

    Args:
        noisy: `(B, C, F', h, w)` noisy target latent z_t.
        source: `(B, C, F', h, w)` source-video latent z_src.
        first_frame: `(B, C, 1, h, w)` (or `(B, C, h, w)`) latent of the edited first frame ẑ.
        mask_channels: channels of M (0 for the original Fun-Control layout).

    Returns:
        `(B, 3C + mask_channels, F', h, w)`.
    """
    if first_frame.ndim == 4:
        first_frame = first_frame.unsqueeze(2)
    if (
        noisy.shape != source.shape
        or first_frame.shape[:2] + first_frame.shape[3:] != noisy.shape[:2] + noisy.shape[3:]
    ):
        raise ValueError(
            f"latent shapes disagree: noisy {tuple(noisy.shape)}, source {tuple(source.shape)}, "
            f"first frame {tuple(first_frame.shape)}"
        )
    b, _, f, h, w = noisy.shape
    padded = torch.zeros_like(noisy)
    padded[:, :, :1] = first_frame[:, :, :1]  # ẑ at latent frame 0, zeros after (Fun-Control's start image)
    mask = first_frame_mask(b, mask_channels, f, h, w, device=noisy.device, dtype=noisy.dtype)
    return torch.cat([noisy, source, padded, mask], dim=1)


# ----------------------------------------------------------------------------------------------
# From a Wan2.1 Fun-Control model to FreeProp
# ----------------------------------------------------------------------------------------------


def widen_patch_embedding(weight: torch.Tensor, mask_channels: int) -> torch.Tensor:
    """`(D, 3C, p_t, p_h, p_w)` → `(D, 3C + mask_channels, ...)`: the new input channels start at zero."""
    extra = weight.new_zeros(weight.shape[0], mask_channels, *weight.shape[2:])
    return torch.cat([weight, extra], dim=1)


def expand_input_channels(
    base: WanTransformer3DModel, mask_channels: int = 4, **freeprop_kwargs
) -> FreePropTransformer:
    """Build a `FreePropTransformer` from a Fun-Control `WanTransformer3DModel` (in = 3C channels).

    The `patch_embedding` gains `mask_channels` zero-initialised input channels for M (as diffusers'
    own `from_pretrained` zero-fills new input channels), every other weight is copied, and the
    AST-RoPE predictor starts at α_S = 0, α_T = 1. The result therefore computes exactly what `base`
    computes on the first 3C channels, whatever M holds, until training moves it.
    """
    cfg = dict(base.config)
    c = cfg["out_channels"]
    if cfg["in_channels"] != 3 * c:
        raise ValueError(f"expected a Fun-Control model with in_channels = 3·{c}, got {cfg['in_channels']}")
    init_keys = set(inspect.signature(FreePropTransformer.__init__).parameters)
    kwargs = {k: v for k, v in cfg.items() if k in init_keys}
    kwargs.update(freeprop_kwargs, in_channels=3 * c + mask_channels)
    model = FreePropTransformer(**kwargs).to(base.device)
    if base.dtype != model.dtype:
        model = model.to(base.dtype)

    state = base.state_dict()
    state["patch_embedding.weight"] = widen_patch_embedding(state["patch_embedding.weight"], mask_channels)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("alpha_predictor.")]
    if missing or unexpected:
        raise RuntimeError(f"expand_input_channels: missing {missing}, unexpected {unexpected}")
    return model
