"""Step 2 of the removal curation loop (paper §3.3): LoRA-fine-tune VACE on the accepted removals.

The fine-tune runs on `freeprop train`'s loop (`training/recipe.py`'s `Trainer`: accelerate, the
resumable data order, atomic checkpoints every `save_every` steps and on SIGTERM/SIGINT, metrics,
non-finite skipping); only the model, the examples and the loss are VACE's:

- model: LoRA (peft, through diffusers' adapter API) on the attention projections of the
  `WanVACETransformer3DModel`, activations checkpointed;
- examples: each accepted removal pair read from its shard when its step comes (the paper's 14,389
  pairs of 81 frames at 720p would be ~2 TB held in memory) and turned into VACE's own conditioning of
  the source video and the removal mask (the pipeline's `preprocess_conditions` /
  `prepare_video_latents` / `prepare_masks`), the removal caption's T5 embedding and the target latents;
- loss: the Wan flow-matching loss of `training/losses.py` (v = ε − x₀, σ from the shifted schedule).

The LoRA is saved as a diffusers LoRA folder (`OUTPUT/adapter`), which VACE loads with
`load_lora_weights` when the removals are regenerated (`models.vace_lora=OUTPUT/adapter`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from freeprop.errors import FreePropInputError
from freeprop.pipeline import LORA_WEIGHTS
from freeprop.training.config import LoraConfig, LossConfig, OptimConfig, TrainConfig
from freeprop.training.losses import fm_loss
from freeprop.training.recipe import StepResult, Trainer, prepare_output_dir
from freeprop.video import replaced_folder

VACE_LORA_TARGETS = r".*blocks\.\d+\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)"  # attention projections


def finetune_vace(
    pipe,
    dataset: str | Path,
    decisions: dict[str, bool],
    output: str | Path,
    steps: int = 1000,
    lr: float = 1e-4,
    rank: int = 64,
    shift: float = 5.0,
    seed: int = 0,
    progress: bool = True,
    save_every: int = 100,
    resume: bool = False,
    gradient_checkpointing: bool = True,
    overwrite: bool = False,
    on_step=None,
) -> dict:
    """LoRA-fine-tune `pipe.transformer` (a `WanVACEPipeline`) on the accepted removals of `dataset`;
    the run's folder `output` is laid out as `freeprop train`'s (checkpoints/, metrics.jsonl,
    summary.json, adapter/). `resume` continues a killed run where its last checkpoint was."""
    examples = VACEExamples(pipe, dataset, decisions, seed)
    cfg = TrainConfig(
        output_dir=str(output), seed=seed, max_steps=steps, batch_size=1, save_every=save_every,
        gradient_checkpointing=gradient_checkpointing, log_every=1,  # a step is one 81-frame clip
        lora=LoraConfig(rank=rank, alpha=rank, target_modules=VACE_LORA_TARGETS),
        optim=OptimConfig(lr=lr, schedule="constant", warmup_steps=0),
        loss=LossConfig(variant="baseline", shift=shift, dropout_text=0.0, dropout_image=0.0),
    )  # fmt: skip
    prepare_output_dir(Path(output), resume, overwrite)
    trainer = VACEFinetune(cfg, pipe, examples)
    trainer.progress = progress
    summary = trainer.fit(resume, on_step)
    return summary | {"accepted": len(examples)}


def accepted_removals(pairs, decisions: dict[str, bool]) -> list[int]:
    """Indices of the accepted removals of a `PairDataset`; one clear error when there are none (checked
    before the 14B model loads)."""
    accepted = [i for i, row in enumerate(pairs.rows) if row["task"] == "removal" and decisions.get(row["sample_id"])]
    if not accepted:
        raise FreePropInputError("no accepted removal pairs in the decisions; accept some on the review page")
    return accepted


class VACEExamples(torch.utils.data.Dataset):
    """The accepted removal pairs of a pair-format folder as VACE training examples, made when asked."""

    def __init__(self, pipe, dataset: str | Path, decisions: dict[str, bool], seed: int = 0):
        from freeprop.data.pairs import PairDataset

        self.pipe, self.seed = pipe, seed
        self.pairs = PairDataset(dataset, tasks=("removal",))
        self.accepted = accepted_removals(self.pairs, decisions)

    def __len__(self) -> int:
        return len(self.accepted)

    @torch.no_grad()
    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from PIL import Image

        from freeprop.codecs import WanVAECodec
        from freeprop.video import to_tensor

        pipe, pair = self.pipe, self.pairs[self.accepted[i]]
        device, generator = pipe.transformer.device, torch.Generator().manual_seed(self.seed + i)
        f, h, w = pair.source.shape[:3]
        mask = pair.mask if pair.mask is not None else np.zeros((f, h, w), np.uint8)
        # VACE's own preprocessing (diffusers' WanVACEPipeline.__call__, steps 3–5), one clip
        video, vmask, refs = pipe.preprocess_conditions(
            [Image.fromarray(x) for x in pair.source], [Image.fromarray(m) for m in mask], None, 1, h, w, f,
            torch.float32, device,
        )  # fmt: skip
        cond = torch.cat([pipe.prepare_video_latents(video, vmask, refs, generator, device),
                          pipe.prepare_masks(vmask, refs, generator)], dim=1)  # fmt: skip
        text, _ = pipe.encode_prompt(pair.target_caption or pair.instruction, do_classifier_free_guidance=False,
                                     device=device)  # fmt: skip
        target = WanVAECodec(pipe.vae).encode(to_tensor(pair.target)[None])
        return {"cond": cond[0], "text": text[0], "target": target[0].to(device)}


class VACEFinetune(Trainer):
    """The Trainer with VACE's model, examples and flow-matching loss (see the module docstring)."""

    label = "finetune VACE"

    def __init__(self, cfg: TrainConfig, pipe, examples: VACEExamples):
        self.pipe = pipe
        super().__init__(cfg, dataset=examples)

    def _setup_model(self, overrides: dict) -> None:
        from peft import LoraConfig as PeftLoraConfig

        cfg, model = self.cfg, self.pipe.transformer
        model.requires_grad_(False)
        model.add_adapter(PeftLoraConfig(r=cfg.lora.rank, lora_alpha=cfg.lora.alpha,
                                         target_modules=cfg.lora.target_modules))  # fmt: skip
        if cfg.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        self.model = model.train()

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> StepResult:
        model = self.accelerator.unwrap_model(self.model)
        x0, dtype = batch["target"], model.dtype
        sigma, _, x_t, v_target = self.noised(x0)  # Wan flow matching, as `freeprop train`
        scale = torch.ones(len(model.config.vace_layers), device=x0.device, dtype=dtype)  # every VACE hint at 1
        with self.accelerator.autocast():
            # (B, C, F, H, W) velocity from [x_t], conditioned on VACE's context and the caption
            pred = self.model(
                hidden_states=x_t.to(dtype), timestep=(sigma * 1000).to(x0.device),
                encoder_hidden_states=batch["text"].to(dtype), control_hidden_states=batch["cond"].to(dtype),
                control_hidden_states_scale=scale, return_dict=False,
            )[0]  # fmt: skip
        loss = fm_loss(pred, v_target)
        return StepResult(loss, {"fm": loss.item(), "sigma": sigma.mean().item(), "loss": loss.item()})

    def save_adapter(self, folder: Path) -> None:
        """A diffusers LoRA folder, written whole and then swapped in (a kill leaves the old or the new)."""
        from diffusers import WanVACEPipeline
        from peft.utils import get_peft_model_state_dict

        if not self.accelerator.is_main_process:
            return
        layers = get_peft_model_state_dict(self.accelerator.unwrap_model(self.model))
        with replaced_folder(folder) as partial:
            WanVACEPipeline.save_lora_weights(partial, transformer_lora_layers=layers)

    @staticmethod
    def adapter_is_complete(folder: Path) -> bool:
        return (Path(folder) / LORA_WEIGHTS).is_file()
