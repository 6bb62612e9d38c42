"""Training configuration: frozen, validated dataclasses; YAML only at the edge (`load_config`).

Paper defaults (§5.1): LoRA rank 128, AdamW, learning rate 2e-4 with cosine decay, λ_motion = 5,
λ_MMD = 1, 2 epochs. Where the paper is silent we follow VideoX-Fun's Wan Fun-Control LoRA recipe
(shift 5, uniform sampling over shifted sigmas, AdamW weight decay 3e-2, ε 1e-10) and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from freeprop.config import from_dict, load_dataclass, to_dict  # noqa: F401 (re-exported)
from freeprop.defaults import PHOTO_POOLS, SYNTH, TASKS
from freeprop.errors import FreePropInputError

VARIANTS = (
    "baseline",
    "ast_rope",
    "full",
)  # paper Table 3: FM only + plain RoPE / + AST-RoPE / + distillation


# diffusers' `get_scheduler` names (diffusers.optimization.SchedulerType)
SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
             "piecewise_constant")


def require(config, section: str, **ranges: tuple) -> None:
    """Each named field within [low, high] (None = unbounded), else one error naming `section.field`."""
    for name, (low, high) in ranges.items():
        value = getattr(config, name)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"≥ {low}" if high is None else f"in [{low}, {high}]"
            key = f"{section}.{name}" if section else name
            raise FreePropInputError(f"{key} must be {bounds}, got {value}")


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "tiny"  # a name from freeprop.models.presets
    weights: str | None = None  # Fun-Control / FreeProp safetensors for the preset (None = random init)
    pipeline: str | None = None  # or a pipeline folder (model_index.json) to fine-tune
    vae: str | None = None  # Wan2.1 VAE folder, for 16-channel models
    head_map: str | None = None  # JSON from `freeprop heads classify`


@dataclass(frozen=True)
class DataConfig:
    path: str = ""  # a pair-format folder (tar shards + index.parquet)
    split: str | None = "train"
    tasks: tuple[str, ...] = ()  # restrict to some tasks; () = all
    num_frames: int = 17  # frames per clip (Wan: 81 or 33, paper §5.1)
    height: int = 64
    width: int = 64
    fps: float | None = None  # resample to this rate (None: keep the pair's rate)
    cache_latents: bool = True  # encode each sample once with the codec and keep its latents on disk
    # > 0: render this many procedural pairs of `split` on the fly instead of reading `path` (seeds as
    # `freeprop data synth` uses them, so pair i is the folder's sample i; ≤ 1,000,000 keeps the
    # train seeds clear of the val/test seeds). The bundled model's GPU recipe (configs/small-gpu.yaml).
    synthetic_pairs: int = 0
    leaves: float = 0.0  # with synthetic_pairs: share of worlds/objects drawn as dead leaves (stage 6)
    camouflage: float = 0.0  # with synthetic_pairs: share of objects drawn like their world (stage 8)
    photos: float = 0.0  # with synthetic_pairs (train): share cut from training photographs (stage 10)
    photo_pool: str = SYNTH.photo_pool  # which training photographs (freeprop.data.photos.TRAIN_POOLS)
    # with synthetic_pairs: each pair's motion is scaled by a factor drawn uniformly from [1, motion_max]
    # (from the pair's seed; 1 = as `freeprop data synth` renders it); faster motion for stage 7
    motion_max: float = 1.0
    num_workers: int = 0  # processes preparing batches ahead of the step (torch DataLoader); 0 = in the loop

    def __post_init__(self):
        require(self, "data", num_frames=(1, None), height=(2, None), width=(2, None), num_workers=(0, None),
                synthetic_pairs=(0, 1_000_000), leaves=(0.0, 1.0), camouflage=(0.0, 1.0),
                photos=(0.0, 1.0),
                motion_max=(1.0, 4.0))
        if unknown := [t for t in self.tasks if t not in TASKS]:
            raise FreePropInputError(f"data.tasks: unknown task {unknown[0]!r}; choose from {', '.join(TASKS)}")
        if self.photo_pool not in PHOTO_POOLS:
            raise FreePropInputError(f"data.photo_pool must be one of {', '.join(PHOTO_POOLS)}, got {self.photo_pool!r}")
        if self.fps is not None and self.fps <= 0:
            raise FreePropInputError(f"data.fps must be > 0 (or null to keep each pair's rate), got {self.fps}")


@dataclass(frozen=True)
class LoraConfig:
    enabled: bool = True
    rank: int = 128  # paper §5.1
    alpha: float = 128.0
    # attention (self and cross) and FFN linears of every block; a regex matched by peft
    target_modules: str = (
        r".*blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|.*blocks\.\d+\.ffn\.net\.(0\.proj|2)"
    )
    dropout: float = 0.0

    def __post_init__(self):
        require(self, "lora", rank=(1, None), dropout=(0.0, 0.99))
        if self.alpha <= 0:
            raise FreePropInputError(f"lora.alpha must be > 0, got {self.alpha}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-4  # paper §5.1
    # VideoX-Fun's value, on weight matrices the recipe adds (LoRA, the α predictor; every matrix when
    # training from scratch) — never on loaded weights, norms or biases: decay pulls a checkpoint's
    # weights towards 0, not towards the checkpoint (×0.80 for patch_embedding at the paper's scale).
    weight_decay: float = 3e-2
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-10  # VideoX-Fun
    schedule: str = "cosine"  # paper §5.1: cosine decay (diffusers get_scheduler names)
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    # The α predictor's learning rate as a multiple of `lr`. The paper trains everything at one rate
    # (§5.1: 2e-4) for 2 epochs of 300K clips; a few hundred miniature steps barely move α at that rate,
    # so the ablation (benchmarks/ablation.py) raises it. 1 = the paper.
    alpha_lr_scale: float = 1.0

    def __post_init__(self):
        require(self, "optim", weight_decay=(0.0, None), warmup_steps=(0, None))
        for name in ("lr", "eps", "max_grad_norm", "alpha_lr_scale"):
            if getattr(self, name) <= 0:
                raise FreePropInputError(f"optim.{name} must be > 0, got {getattr(self, name)}")
        if not all(0 <= b < 1 for b in self.betas):
            raise FreePropInputError(f"optim.betas must lie in [0, 1), got {self.betas}")
        if self.schedule not in SCHEDULES:
            raise FreePropInputError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")


@dataclass(frozen=True)
class LossConfig:
    variant: str = "full"  # baseline | ast_rope | full
    lambda_motion: float = 5.0  # paper §5.1
    lambda_mmd: float = 1.0  # paper §5.1
    distill_blocks: tuple[int, ...] = ()  # block indices feeding the distillation; () = block (L − 1) // 2
    k_s: int = 2  # spatial downsampling K_S of §4.3
    mmd_bandwidth: float | None = None  # None = median heuristic on the teacher
    # From-scratch runs (the bundled CPU model): the paper distils from a *pretrained* teacher, so a
    # random network first learns FFP with L_FM alone for `distill_start_step` steps, then λ_motion and
    # λ_MMD ramp in linearly over `distill_warmup_steps` (a random teacher collapses the features).
    # The teacher: "self" — the network being trained, run on identity propagation (the paper's
    # wording; with LoRA on a pretrained model); "snapshot" — a frozen copy taken when distillation
    # starts. Full fine-tunes need "snapshot": a self-teacher lets student and teacher collapse their
    # features together (measured on the small preset: FM 0.035 → 1.1 within 75 steps, motion → 0).
    teacher: str = "self"
    distill_start_step: int = 0
    distill_warmup_steps: int = 0
    # Loss weighting by edit mask (ours; the paper weights L_FM uniformly): latent positions where the
    # target differs from the source weigh 1 + edit_weight in L_FM, so a small edit is not drowned by
    # the unedited majority of the frame. 0 = uniform.
    edit_weight: float = 0.0
    timestep_sampling: str = "uniform"  # uniform (over shifted sigmas) | logit_normal
    shift: float = 5.0  # VideoX-Fun wan_civitai.yaml
    logit_mean: float = 0.0
    logit_std: float = 1.0
    dropout_text: float = 0.1  # condition dropout (VideoX-Fun: ~0.1 for each condition)
    dropout_image: float = 0.1  # CLIP tokens of the edit (only with an image encoder; else zeros, as at inference)
    dropout_first_frame: float = 0.0
    dropout_source: float = 0.0

    def __post_init__(self):
        require(self, "loss", lambda_motion=(0.0, None), lambda_mmd=(0.0, None), k_s=(1, None),
                distill_start_step=(0, None), distill_warmup_steps=(0, None), edit_weight=(0.0, None),
                dropout_text=(0.0, 1.0), dropout_image=(0.0, 1.0), dropout_first_frame=(0.0, 1.0),
                dropout_source=(0.0, 1.0))
        for name in ("shift", "logit_std"):
            if getattr(self, name) <= 0:
                raise FreePropInputError(f"loss.{name} must be > 0, got {getattr(self, name)}")
        if self.mmd_bandwidth is not None and self.mmd_bandwidth <= 0:
            raise FreePropInputError(f"loss.mmd_bandwidth must be > 0 (or null: median heuristic), got {self.mmd_bandwidth}")


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/tiny"
    seed: int = 0
    max_steps: int | None = None  # None: run `epochs` over the data
    epochs: int = 2  # paper §5.1
    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | bf16 | fp16 (accelerate)
    gradient_checkpointing: bool = False
    full_finetune: bool = (
        False  # train every weight (models trained from scratch, e.g. the bundled one); paper: LoRA
    )
    save_every: int = 500
    log_every: int = 10
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row
    tensorboard: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if self.loss.variant not in VARIANTS:
            raise FreePropInputError(f"loss.variant must be one of {VARIANTS}, got {self.loss.variant!r}")
        if self.loss.teacher not in ("self", "snapshot"):
            raise FreePropInputError(f"loss.teacher must be self or snapshot, got {self.loss.teacher!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise FreePropInputError(
                f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}"
            )
        if self.loss.timestep_sampling not in ("uniform", "logit_normal"):
            raise FreePropInputError("loss.timestep_sampling must be 'uniform' or 'logit_normal'")
        require(self, "", batch_size=(1, None), grad_accum=(1, None), save_every=(1, None), log_every=(1, None),
                epochs=(1, None), max_nonfinite=(1, None))
        if self.max_steps is not None and self.max_steps < 1:
            raise FreePropInputError(f"max_steps must be ≥ 1 (or null: run `epochs`), got {self.max_steps}")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML recipe (or start from defaults with `path=None`), apply `key=value` overrides."""
    return load_dataclass(TrainConfig, path, overrides)
