"""Named model configurations: a frozen, validated dataclass per preset.

Real sizes follow Wan2.1 (`wan/configs/wan_t2v_1_3B.py`, `wan_t2v_14B.py`) and the Fun-Control
checkpoints (DiffSynth `model_configs.py`: `has_image_input=True, in_dim=48`), as collected in
`shared/notes/model-and-wan.md` §1.4 and §5. FreeProp adds the first-frame mask M (paper §4.1) as
`mask_channels` extra input channels after Fun-Control's 48.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from freeprop.errors import FreePropInputError


@dataclass(frozen=True)
class FreePropConfig:
    """Architecture of a `FreePropTransformer`.

    The input has `3·latent_channels + mask_channels` channels, in this order (paper §4.1):
    noisy latent z | source latent z_src | edited first-frame latent ẑ zero-padded in time | mask M.
    """

    num_layers: int
    num_attention_heads: int
    attention_head_dim: int
    ffn_dim: int
    latent_channels: int = 16  # Wan VAE z_dim (PixelCodec: 3·s²)
    mask_channels: int = (
        4  # M: one channel per pixel frame folded into a latent frame (Wan I2V style); 0 = Fun-Control
    )
    text_dim: int = 4096  # umT5-XXL width
    freq_dim: int = 256
    image_dim: int | None = 1280  # CLIP ViT-H image tokens (Fun-Control has img_emb); None = no image branch
    patch_size: tuple[int, int, int] = (1, 2, 2)
    cross_attn_norm: bool = True
    qk_norm: str = "rms_norm_across_heads"
    eps: float = 1e-6
    rope_max_seq_len: int = 1024
    # AST-RoPE (paper §4.2)
    use_ast_rope: bool = True  # False = plain Wan RoPE (the paper's "Baseline" ablation)
    predictor_dim: int = 256
    predictor_layers: int = 2
    predictor_heads: int = 4
    predictor_pool: int = 4
    alpha_t_max: float = 4.0
    alpha_s_range: str = "unit"  # α_S ∈ [0, 1) (§4.2); "signed" = tanh's (−1, 1), how earlier models were trained
    # What the flow is learned over (beyond the paper, which generates the target latent itself):
    # False = x₀ is the target latent; True = x₀ is the edit's residual z_tgt − z_src, and the sampler
    # adds z_src back, so "change nothing" is the zero residual (the bundled CPU model; see docs/model.md).
    predicts_residual: bool = False
    # What the network outputs: "velocity" v = ε − x₀ (Wan, the paper) or "sample" x̂₀ itself, from which
    # the sampler derives v = (x_t − x̂₀)/σ. With "sample" the noise passes through the ODE exactly and a
    # small network only has to model x₀ (for a residual model, "change nothing" is an output of 0).
    prediction: str = "velocity"
    head_map: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        positive = (
            "num_layers",
            "num_attention_heads",
            "attention_head_dim",
            "ffn_dim",
            "latent_channels",
            "text_dim",
            "freq_dim",
            "predictor_dim",
            "predictor_layers",
            "predictor_heads",
            "predictor_pool",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.mask_channels < 0:
            raise ValueError(f"mask_channels must be ≥ 0, got {self.mask_channels}")
        if self.attention_head_dim % 2 or self.attention_head_dim < 6:
            raise ValueError(
                f"attention_head_dim must be even and ≥ 6 (t/h/w RoPE split), got {self.attention_head_dim}"
            )
        if self.predictor_dim % self.predictor_heads:
            raise ValueError("predictor_dim must be divisible by predictor_heads")
        if self.qk_norm not in ("rms_norm_across_heads",):
            raise ValueError(f"qk_norm must be 'rms_norm_across_heads', got {self.qk_norm!r}")
        if self.alpha_t_max <= 1:
            raise ValueError(f"alpha_t_max must be > 1, got {self.alpha_t_max}")
        if self.alpha_s_range not in ("unit", "signed"):
            raise ValueError(f"alpha_s_range must be 'unit' or 'signed', got {self.alpha_s_range!r}")
        if self.prediction not in ("velocity", "sample"):
            raise ValueError(f"prediction must be 'velocity' or 'sample', got {self.prediction!r}")

    @property
    def dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def in_channels(self) -> int:
        return 3 * self.latent_channels + self.mask_channels

    def replace(self, **changes) -> FreePropConfig:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise FreePropInputError(f"unknown model config key(s) {sorted(unknown)}; see FreePropConfig")
        return dataclasses.replace(self, **changes)

    def transformer_kwargs(self) -> dict:
        """Keyword arguments of `FreePropTransformer(...)` (diffusers' Wan kwargs plus FreeProp's)."""
        return dict(
            patch_size=tuple(self.patch_size),
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            in_channels=self.in_channels,
            out_channels=self.latent_channels,
            text_dim=self.text_dim,
            freq_dim=self.freq_dim,
            ffn_dim=self.ffn_dim,
            num_layers=self.num_layers,
            cross_attn_norm=self.cross_attn_norm,
            qk_norm=self.qk_norm,
            eps=self.eps,
            image_dim=self.image_dim,
            added_kv_proj_dim=self.dim if self.image_dim else None,
            rope_max_seq_len=self.rope_max_seq_len,
            use_ast_rope=self.use_ast_rope,
            head_map=self.head_map,
            predictor_dim=self.predictor_dim,
            predictor_layers=self.predictor_layers,
            predictor_heads=self.predictor_heads,
            predictor_pool=self.predictor_pool,
            alpha_t_max=self.alpha_t_max,
            alpha_s_range=self.alpha_s_range,
            predicts_residual=self.predicts_residual,
            prediction=self.prediction,
        )


PRESETS: dict[str, FreePropConfig] = {
    # CPU-sized, for tests and the bundled model: PixelCodec(2) latents (3·2² = 12 channels, no
    # temporal compression, so M is one channel), head_dim 12 → RoPE t/h/w = 4/4/4.
    "tiny": FreePropConfig(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=12,
        ffn_dim=32,
        latent_channels=12,
        mask_channels=1,
        text_dim=16,
        image_dim=None,
        rope_max_seq_len=32,
        predictor_dim=16,
        predictor_layers=1,
        predictor_heads=2,
        predictor_pool=2,
    ),
    # The bundled CPU model up to stage 10: PixelCodec(4) latents (48 channels, 64×64 → 16×16), 3 layers of 6 heads × 64
    # (RoPE t/h/w = 24/20/20), 8×8 tokens per frame; 8.4 M parameters (17 MB in fp16). Each token carries
    # 192 latent values of z_t, 192 of z_src and 192 of ẑ and emits 192, so the stream must be wide:
    # measured, a 128-wide version never learned to use the source (FM loss 0.37 after 1,000 steps,
    # noise out), this 384-wide one reached 0.05–0.2 in 300 steps and reproduces the source.
    "small": FreePropConfig(
        num_layers=3,  # 3 × 384-wide blocks: 8.4M parameters, 17 MB in fp16 (the bundle must stay ≤ 20 MB)
        num_attention_heads=6,
        attention_head_dim=64,
        ffn_dim=1536,
        latent_channels=48,
        mask_channels=1,
        text_dim=16,
        image_dim=None,
        rope_max_seq_len=64,
        predictor_dim=32,
        predictor_layers=1,
        predictor_heads=2,
        predictor_pool=2,
        predicts_residual=True,  # generate z_tgt − z_src: the small model learns the edit, not the video
        prediction="sample",  # output x̂₀ (the residual), not the velocity: no noise to reproduce
    ),
    # Wan2.1-Fun-1.3B-Control: dim 1536, 12 heads × 128, 30 layers, ffn 8960, + mask M (4 channels).
    "wan2.1-fun-1.3b-control": FreePropConfig(
        num_layers=30,
        num_attention_heads=12,
        attention_head_dim=128,
        ffn_dim=8960,
    ),
    # Wan2.1-Fun-14B-Control: dim 5120, 40 heads × 128, 40 layers, ffn 13824.
    "wan2.1-fun-14b-control": FreePropConfig(
        num_layers=40,
        num_attention_heads=40,
        attention_head_dim=128,
        ffn_dim=13824,
    ),
}

# `small` one block deeper with a narrower FFN (4 × 384, ffn 1024): 9.5 M parameters, 18 MiB in fp16 —
# a fourth attention hop for finding where frame-0 content went (scripts/gpu_train.sh's `deep` recipe).
PRESETS["small-deep"] = PRESETS["small"].replace(num_layers=4, ffn_dim=1024)

# `small` over PixelCodec(2) latents (12 channels): 4×4-pixel tokens, 16×16 per 64×64 frame, each carrying
# 48 latent values instead of 192 — four times the tokens (and ≈ 4× the compute) for the same 384-wide
# stream. The experiment behind it is in docs/model.md ("Where a photographed edit is lost"); the bundled
# CPU model since stage 11 (configs/small-fine2.yaml; then small-fine3.yaml to small-fine8.yaml and
# small-fine10.yaml, stage 16, small-fine11.yaml, stage 17, and since then the mean of the weights of
# stage 17 and of small-fine12.yaml and small-fine13.yaml, two runs from it).
PRESETS["small-fine"] = PRESETS["small"].replace(latent_channels=12)


def get_preset(name: str, **overrides) -> FreePropConfig:
    """The named preset, with optional field overrides (unknown names and keys are rejected)."""
    if name not in PRESETS:
        raise FreePropInputError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
