"""The FreeProp training recipe: flow matching + LoRA + identity-propagation self-distillation.

One step (paper §4.1, §4.3, Eq. 5), for a batch of (source, target) latent pairs:

1. x_t = (1 − σ)·x₀ + σ·ε with σ from the shifted schedule; v = ε − x₀.
2. Student (FFP task): the model on [x_t | z_src | ẑ | M] → v̂, plus block features z^l.
3. Teacher (identity propagation, `full` variant only): the *same* model under `no_grad` on
   [x_t | z_tgt | ẑ | M] — the target video as its own source, same x_t and t — keeping only the
   chosen blocks' features (detached). One extra forward pass, no parameter copy.
4. L = L_FM + λ_motion·L_motion + λ_MMD·L_MMD (`training/losses.py`).

Variants (paper Table 3): `baseline` = FM with plain RoPE; `ast_rope` = FM with AST-RoPE;
`full` = AST-RoPE + self-distillation. Trainable: LoRA (peft, through diffusers' adapter API) on the
blocks' attention and FFN linears, plus the AlphaPredictor and `patch_embedding` in full (the mask
channels M start at zero and must learn); everything else is frozen.

Runs on accelerate (CPU here; DDP/FSDP via `accelerate launch`), saves resumable checkpoints
atomically every `save_every` steps and on SIGTERM/SIGINT, skips non-finite steps, and logs to a
progress bar, `metrics.jsonl` and optionally TensorBoard.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm.auto import tqdm

from freeprop.errors import FreePropInputError
from freeprop.models.loading import write_safetensors
from freeprop.models.transformer import build_ffp_input
from freeprop.pipeline import IMAGE_TOKENS
from freeprop.training import checkpoints
from freeprop.training.config import TrainConfig, to_dict
from freeprop.training.data import LatentPairDataset, SyntheticLatentDataset
from freeprop.training.losses import (
    add_noise,
    edit_weights,
    fm_loss,
    mmd_loss,
    motion_loss,
    prepare_features,
    sample_sigmas,
    training_sigmas,
)
from freeprop.video import atomic_path


def distill_ramp(step: int, start: int, warmup: int) -> float:
    """Weight of the distillation terms at `step`: 0 before `start`, then linear to 1 over `warmup`."""
    if step < start:
        return 0.0
    return min(1.0, (step - start) / warmup) if warmup else 1.0


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. non-finite losses); the message says why and what to try."""


@dataclass
class StepResult:
    loss: torch.Tensor
    terms: dict[str, float]


class CheckpointMismatch(FreePropInputError):
    """A whole checkpoint written under another config (LoRA rank, trainable set): not a damaged one."""


def param_groups(
    model: torch.nn.Module, weight_decay: float, spare_loaded: bool, alpha_lr: float | None = None
) -> list[dict]:
    """AdamW groups: decay on weight matrices; never on norms, biases and other vectors; and, with
    `spare_loaded`, not on the loaded weights either — only on those the recipe adds (LoRA, the α
    predictor), since decay would pull a checkpoint's weights towards zero rather than towards it.
    With `alpha_lr`, the α predictor's parameters form groups of their own at that learning rate."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        predictor = name.startswith("alpha_predictor.")
        added = "lora_" in name or predictor
        matrix = param.ndim >= 2 and not name.endswith("cell_embedding")  # a position embedding: no decay
        decay = matrix and (added or not spare_loaded)
        groups.setdefault((decay, predictor and alpha_lr is not None), []).append(param)
    out = [{"params": groups.get((decay, False), []), "weight_decay": weight_decay * decay} for decay in (True, False)]
    return out + [
        {"params": groups[(decay, True)], "weight_decay": weight_decay * decay, "lr": alpha_lr}
        for decay in (True, False)
        if (decay, True) in groups
    ]


class Trainer:
    """The recipe's state and loop. `dataset` replaces `cfg.data` (any dataset of latent dicts, see
    `training/data.py`); `model_overrides` change preset fields (e.g. `num_layers` for benchmarks).
    Another objective on the same loop (the VACE fine-tune of `data/vace_finetune.py`) overrides
    `_setup_model`, `compute_loss`, `save_adapter` and `adapter_is_complete`."""

    label: str | None = None  # the progress bar's name (default: "train VARIANT")

    def __init__(self, cfg: TrainConfig, dataset=None, model_overrides: dict | None = None):
        from accelerate import Accelerator

        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
            raise FreePropInputError("mixed_precision=fp16 needs a CUDA GPU; use bf16 or no on the CPU")
        self.accelerator = Accelerator(
            mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum
        )
        self.step, self.epoch, self.position, self.nonfinite_streak, self.skipped = 0, 0, 0, 0, 0
        self.stop_requested = False
        self.progress = True  # the progress bar (on the local main process)
        self._order, self._batches = (None, []), None  # the current epoch's order; the batch stream
        torch.manual_seed(cfg.seed)
        self._setup_model(model_overrides or {})
        self.sigmas = training_sigmas(cfg.loss.shift)
        self.teacher_model = None  # loss.teacher = "snapshot": frozen at the first distillation step
        # noise, timesteps, condition dropout: one stream per rank (the same stream on every rank would
        # train each global batch at one σ with one noise)
        rank = self.accelerator.process_index
        self.generator = torch.Generator().manual_seed(cfg.seed + 1 + 1_000_003 * rank)
        self._setup_data(dataset)
        self._setup_optimizer()

    # ------------------------------------------------------------------------------------------
    # Setup
    # ------------------------------------------------------------------------------------------

    def _setup_model(self, overrides: dict) -> None:
        from peft import LoraConfig

        from freeprop.models import build_transformer
        from freeprop.models.heads import read_head_map
        from freeprop.pipeline import FreePropPipeline, load_pipeline, make_scheduler

        cfg = self.cfg
        if overrides:
            pipe = FreePropPipeline(build_transformer(cfg.model.preset, **overrides), make_scheduler())
        else:
            pipe = load_pipeline(cfg.model.pipeline or cfg.model.preset, cfg.model.weights, cfg.model.vae)
        self.pipe = pipe
        model = pipe.transformer
        if cfg.model.head_map:
            model.set_head_map(read_head_map(cfg.model.head_map))
        model.set_ast_rope(cfg.loss.variant != "baseline")
        model.requires_grad_(False)
        if cfg.lora.enabled:
            model.add_adapter(
                LoraConfig(
                    r=cfg.lora.rank,
                    lora_alpha=cfg.lora.alpha,
                    lora_dropout=cfg.lora.dropout,
                    target_modules=cfg.lora.target_modules,
                    init_lora_weights=True,
                )
            )
        if cfg.full_finetune:
            model.requires_grad_(True)
        model.patch_embedding.requires_grad_(True)  # the mask channels M train fully (§4.1)
        model.alpha_predictor.requires_grad_(cfg.loss.variant != "baseline")
        if cfg.gradient_checkpointing:
            model.enable_gradient_checkpointing()
        model.train()
        self.model = model
        n_layers = model.config.num_layers
        self.distill_blocks = tuple(cfg.loss.distill_blocks) or (
            (n_layers - 1) // 2,
        )  # the (lower) middle block
        if any(not 0 <= b < n_layers for b in self.distill_blocks):
            raise FreePropInputError(f"loss.distill_blocks {self.distill_blocks} outside 0..{n_layers - 1}")

    def _setup_data(self, dataset) -> None:
        cfg = self.cfg
        if dataset is not None:
            self.dataset = dataset
        elif cfg.data.synthetic_pairs:
            self.dataset = SyntheticLatentDataset(cfg.data, self.pipe.codec, (512, self.model.config.text_dim))
        elif not cfg.data.path:
            raise FreePropInputError(
                "data.path is empty; point it at a pair-format folder (freeprop data synth), "
                "or render pairs on the fly with data.synthetic_pairs"
            )
        else:
            text_fn = None
            if self.pipe.text_encoder is not None:
                text_fn = lambda caption: self.pipe.encode_prompt(caption or "", "cpu")  # noqa: E731
            image_fn = None
            if self.pipe.image_encoder is not None:  # CLIP of the edit, as at inference (Fun-Control)
                image_fn = lambda frame: self.pipe.encode_image(frame, "cpu")  # noqa: E731
            self.dataset = LatentPairDataset(
                cfg.data,
                self.pipe.codec,
                self.out / "latent_cache",
                text_fn,
                (512, self.model.config.text_dim),
                image_fn,
            )
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        self.per_rank = len(self.dataset) // world
        if self.per_rank < cfg.batch_size:
            raise FreePropInputError(
                f"{cfg.data.path}: {len(self.dataset)} samples, fewer than one batch per process"
            )
        self.steps_per_epoch = self.per_rank // cfg.batch_size // cfg.grad_accum
        self.rank, self.world = rank, world
        self.max_steps = cfg.max_steps or max(1, self.steps_per_epoch * cfg.epochs)

    def _setup_optimizer(self) -> None:
        from diffusers.optimization import get_scheduler

        cfg = self.cfg.optim
        self.trainable_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        pretrained = bool(self.cfg.model.weights or self.cfg.model.pipeline)
        alpha_lr = cfg.lr * cfg.alpha_lr_scale if cfg.alpha_lr_scale != 1 else None
        groups = param_groups(self.model, cfg.weight_decay, spare_loaded=pretrained, alpha_lr=alpha_lr)
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
        # accelerate's prepared scheduler advances num_processes times per optimizer step (as in
        # diffusers' training scripts), so its lengths are given in those units
        world = self.accelerator.num_processes
        scheduler = get_scheduler(
            cfg.schedule,
            optimizer,
            num_warmup_steps=cfg.warmup_steps * world,
            num_training_steps=self.max_steps * world,
        )
        self.model, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            self.model, optimizer, scheduler
        )

    # ------------------------------------------------------------------------------------------
    # Data order: a fixed permutation per epoch, sharded by rank; resumable by position
    # ------------------------------------------------------------------------------------------

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._order[0] != epoch:  # one permutation per epoch, not per batch
            order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.cfg.seed + epoch))
            self._order = (epoch, order[self.rank :: self.world][: self.per_rank].tolist())
        return self._order[1]

    def _advance(self, epoch: int, position: int) -> tuple[int, int, int]:
        """(epoch, start, end) of the batch after data position (epoch, position)."""
        bs = self.cfg.batch_size
        if position + bs > self.per_rank:
            epoch, position = epoch + 1, 0
        return epoch, position, position + bs

    def _batch_plan(self):
        """The index lists of every batch from the current data position on (the DataLoader's plan)."""
        epoch, position = self.epoch, self.position
        while True:
            epoch, start, position = self._advance(epoch, position)
            yield self._epoch_order(epoch)[start:position]

    def _next_batch(self) -> dict[str, torch.Tensor]:
        """The next batch in the resumable order; with `data.num_workers`, prepared ahead by worker
        processes in that same order (the stream restarts from the data position after a resume)."""
        if self._batches is None:
            workers = self.cfg.data.num_workers
            if workers:
                loader = torch.utils.data.DataLoader(
                    self.dataset, batch_sampler=self._batch_plan(), num_workers=workers, collate_fn=_stack,
                    prefetch_factor=4, worker_init_fn=_leave_process_group,
                )
                self._batches = iter(loader)
            else:
                self._batches = (_stack([self.dataset[i] for i in idx]) for idx in self._batch_plan())
        batch = next(self._batches)
        self.epoch, _, self.position = self._advance(self.epoch, self.position)
        return {k: v.to(self.accelerator.device) for k, v in batch.items()}

    def close(self) -> None:
        """Shut the data workers down now (`train` does at its end), while the main process can join them."""
        self._batches = None

    # ------------------------------------------------------------------------------------------
    # The objective
    # ------------------------------------------------------------------------------------------

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> StepResult:
        cfg, model = self.cfg.loss, self.model
        unwrapped = self.accelerator.unwrap_model(model)
        target, source, first, text = batch["target"], batch["source"], batch["first_frame"], batch["text"]
        x0 = unwrapped.target_latents(target, source)  # z_tgt, or z_tgt − z_src for a residual model
        b, g = x0.shape[0], self.generator
        # 1. Noise and timesteps (Wan flow matching).
        sigma, noise, x_t, v_target = self.noised(x0)
        timestep = (sigma * 1000).to(x0.device)

        # 2. Condition dropout (per sample), then the student's FFP input.
        def keep(p):
            return (torch.rand(b, generator=g) >= p).float().view(b, *[1] * (x0.ndim - 1)).to(x0)

        text_in = text * keep(cfg.dropout_text).view(b, 1, 1)
        student_in = build_ffp_input(
            x_t,
            source * keep(cfg.dropout_source),
            first * keep(cfg.dropout_first_frame),
            unwrapped.mask_channels,
        )
        image = self._image_tokens(batch, keep(cfg.dropout_image).view(b, 1, 1), x0)
        ramp = distill_ramp(self.step, cfg.distill_start_step, cfg.distill_warmup_steps)
        distill = cfg.variant == "full" and ramp > 0  # no teacher pass while its weight is 0
        blocks = self.distill_blocks if distill else ()
        with self.accelerator.autocast():
            out = model(student_in, timestep, text_in, image, return_features=blocks)
            # L_FM on the velocity; a sample predictor (x̂₀) regresses x₀ itself (= σ²-weighted L_FM)
            fm_target = x0 if unwrapped.config.prediction == "sample" else v_target
            loss_fm = fm_loss(out.sample, fm_target, edit_weights(target, source, cfg.edit_weight))
        terms = {
            "fm": loss_fm.item(),
            "sigma": sigma.mean().item(),
            "alpha_s": out.alpha_s.mean().item(),
            "alpha_t": out.alpha_t.mean().item(),
        }
        loss = loss_fm

        # 3. Identity-propagation teacher: target as its own source, same x_t and t; the same network
        #    (loss.teacher = "self", the paper) or a frozen copy taken when distillation starts ("snapshot").
        if distill:
            # A residual model's teacher generates its own residual (zero: source = target) from the
            # same noise at the same σ, i.e. x_t = σ·ε; a target model's teacher sees the same x_t.
            residual = unwrapped.config.predicts_residual
            teacher_x = add_noise(torch.zeros_like(x0), noise, sigma.to(x0.device))[0] if residual else x_t
            teacher_in = build_ffp_input(teacher_x, target, first, unwrapped.mask_channels)
            teacher_net = self._teacher() if cfg.teacher == "snapshot" else model
            with torch.no_grad(), self.accelerator.autocast():
                teacher = teacher_net(
                    teacher_in, timestep, text_in, image, return_features=blocks, features_only=True
                )
            f, h, w = self._token_grid(x0)
            l_motion = l_mmd = 0.0
            for block in blocks:
                s_tok = prepare_features(out.features[block], f, h, w, cfg.k_s)
                t_tok = prepare_features(teacher.features[block].detach(), f, h, w, cfg.k_s)
                l_motion = l_motion + motion_loss(s_tok, t_tok) / len(blocks)
                l_mmd = l_mmd + mmd_loss(s_tok, t_tok, cfg.mmd_bandwidth) / len(blocks)
            loss = loss + ramp * (cfg.lambda_motion * l_motion + cfg.lambda_mmd * l_mmd)  # Eq. (5)
            terms |= {"motion": l_motion.item(), "mmd": l_mmd.item()}
        terms["loss"] = loss.item()
        return StepResult(loss, terms)

    def noised(self, x0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(σ, ε, x_t, v = ε − x₀) for a batch of clean latents, σ from the shifted schedule (Wan)."""
        cfg = self.cfg.loss
        sigma = sample_sigmas(x0.shape[0], self.sigmas, cfg.timestep_sampling, self.generator, cfg.logit_mean,
                              cfg.logit_std)  # fmt: skip
        noise = torch.randn(x0.shape, generator=self.generator).to(x0)
        x_t, v_target = add_noise(x0, noise, sigma.to(x0.device))
        return sigma, noise, x_t, v_target

    def _teacher(self):
        """The frozen snapshot teacher, taken from the current weights the first time it is needed."""
        if self.teacher_model is None:
            self.teacher_model = (
                copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
            )
        return self.teacher_model

    def _token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        p_t, p_h, p_w = self.accelerator.unwrap_model(self.model).config.patch_size
        return latents.shape[2] // p_t, latents.shape[3] // p_h, latents.shape[4] // p_w

    def _image_tokens(self, batch: dict, keep: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
        """CLIP tokens of the edited first frame (with dropout) when the pipeline has an image encoder;
        zeros otherwise — what the pipeline feeds at inference in each case (`FreePropPipeline.__call__`)."""
        if "image" in batch:
            return batch["image"] * keep
        image_dim = self.accelerator.unwrap_model(self.model).config.image_dim
        return None if not image_dim else like.new_zeros(like.shape[0], IMAGE_TOKENS, image_dim)

    # ------------------------------------------------------------------------------------------
    # The loop
    # ------------------------------------------------------------------------------------------

    def _request_stop(self, signum, frame) -> None:
        self.stop_requested = True

    def train(self, on_step=None) -> dict:
        """Run to `max_steps` (or until SIGTERM/SIGINT); returns a summary dict."""
        cfg, acc = self.cfg, self.accelerator
        self.out.mkdir(parents=True, exist_ok=True)
        main = acc.is_main_process  # one process writes the run's files
        if main:
            (self.out / "config.json").write_text(json.dumps(to_dict(cfg), indent=1, default=str))
        handlers = {s: signal.signal(s, self._request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        metrics_file = (self.out / "metrics.jsonl").open("a") if main else None
        writer = self._tensorboard() if main else None
        start, start_step, recent = time.perf_counter(), self.step, []
        bar = tqdm(
            total=self.max_steps,
            initial=self.step,
            desc=self.label or f"train {cfg.loss.variant}",
            disable=not (self.progress and acc.is_local_main_process),
        )
        status = "finished"
        try:
            while self.step < self.max_steps:
                if self.stop_requested:
                    status = "interrupted"
                    break
                terms = self._train_step()
                if terms is None:
                    continue
                self.step += 1
                recent = (recent + [terms])[-50:]
                bar.update(1)
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in terms.items() if k in ("loss", "fm", "motion", "mmd")}
                )
                if self.step % cfg.log_every == 0 or self.step == self.max_steps:
                    record = {
                        "step": self.step,
                        "epoch": self.epoch,
                        "lr": self.lr_scheduler.get_last_lr()[0],
                        **terms,
                    }
                    if acc.num_processes > 1:  # every rank's σ (each rank draws its own)
                        record["sigma_per_rank"] = acc.gather(torch.tensor([terms["sigma"]])).tolist()
                    if metrics_file is not None:
                        metrics_file.write(json.dumps(record) + "\n")
                        metrics_file.flush()
                    if writer is not None:
                        for key, value in record.items():
                            writer.add_scalar(f"train/{key}", value, self.step)
                if self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                if on_step is not None:
                    on_step(self)
        finally:
            bar.close()
            self.close()
            if metrics_file is not None:
                metrics_file.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        self.save_checkpoint()
        self.save_adapter(self.out / "adapter")
        if (
            cfg.full_finetune and acc.is_main_process
        ):  # a complete pipeline folder, loadable by `freeprop edit`
            self.pipe.transformer = acc.unwrap_model(self.model)
            self.pipe.save_pretrained(self.out / "pipeline")
        mean = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]} if recent else {}
        summary = {
            "status": status,
            "steps": self.step,
            "max_steps": self.max_steps,
            "skipped_nonfinite": self.skipped,
            "seconds": round(time.perf_counter() - start, 2),
            "seconds_per_step": round((time.perf_counter() - start) / max(1, self.step - start_step), 4),
            "recent_mean": mean,
            "adapter": str(self.out / "adapter"),
        }
        if main:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    def fit(self, resume: bool = False, on_step=None) -> dict:
        """`train`, after resuming from the latest checkpoint if asked; a finished run is left as it is
        (its adapter rewritten from the last checkpoint if a kill cut the final save)."""
        if resume:
            self.load_checkpoint()
        if self.step < self.max_steps:
            return self.train(on_step=on_step)
        status = "already finished"
        if not self.adapter_is_complete(self.out / "adapter"):  # a kill during the final save: redo it
            self.save_adapter(self.out / "adapter")
            status = "already finished; adapter repaired from the last checkpoint"
        return {"status": status, "steps": self.step, "max_steps": self.max_steps}

    def _train_step(self) -> dict | None:
        """One optimiser step (with `grad_accum` micro-batches); None if it was skipped (non-finite)."""
        acc, terms_sum, finite = self.accelerator, {}, True
        for _ in range(self.cfg.grad_accum):
            with acc.accumulate(self.model):
                result = self.compute_loss(self._next_batch())
                if not torch.isfinite(result.loss):
                    finite = False
                    self.optimizer.zero_grad(set_to_none=True)
                    break
                acc.backward(result.loss)
                for k, v in result.terms.items():
                    terms_sum[k] = terms_sum.get(k, 0.0) + v / self.cfg.grad_accum
                if acc.sync_gradients:
                    terms_sum["grad_norm"] = float(
                        acc.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm)
                    )
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            self.skipped += 1
            self.nonfinite_streak += 1
            if self.nonfinite_streak >= self.cfg.max_nonfinite:
                raise TrainingError(
                    f"loss was non-finite {self.nonfinite_streak} steps in a row at step {self.step}; "
                    "lower optim.lr, use mixed_precision=no, or check the data"
                )
            return None
        self.nonfinite_streak = 0
        return terms_sum

    def _tensorboard(self):
        if not self.cfg.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise FreePropInputError(
                "tensorboard=true needs the tensorboard package: pip install tensorboard"
            ) from None
        return SummaryWriter(str(self.out / "tensorboard"))

    # ------------------------------------------------------------------------------------------
    # Checkpoints: trainable weights + optimizer + scheduler + RNG + data position, atomically
    # ------------------------------------------------------------------------------------------

    def trainable_state(self) -> dict[str, torch.Tensor]:
        model = self.accelerator.unwrap_model(self.model)
        params = dict(model.named_parameters())
        return {n: params[n].detach().contiguous().cpu() for n in self.trainable_names}

    def save_adapter(self, folder: Path) -> None:
        from freeprop.pipeline import save_adapter

        if self.accelerator.is_main_process:
            save_adapter(folder, self.accelerator.unwrap_model(self.model))

    @staticmethod
    def adapter_is_complete(folder: Path) -> bool:
        from freeprop.pipeline import adapter_is_complete

        return adapter_is_complete(folder)

    def save_checkpoint(self) -> Path | None:
        acc = self.accelerator
        root = self.out / "checkpoints"
        final, tmp = root / f"step-{self.step:07d}", root / f".step-{self.step:07d}.partial"
        acc.wait_for_everyone()
        if final.exists():
            return final if acc.is_main_process else None
        if acc.is_main_process:
            checkpoints.partial_folder(root, self.step)
        acc.wait_for_everyone()
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        torch.save(rng, tmp / f"rng-{acc.process_index}.pt")  # every rank has its own stream
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return None
        write_safetensors(self.trainable_state(), tmp / "trainable.safetensors")
        if self.teacher_model is not None:  # resume must distil from the same frozen teacher
            write_safetensors(
                {k: v.contiguous() for k, v in self.teacher_model.state_dict().items()}, tmp / "teacher.safetensors"
            )
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.lr_scheduler.state_dict(), tmp / "scheduler.pt")
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "skipped": self.skipped,
            "python_random": random.getstate()[1],
            "numpy_random": np.random.get_state()[1].tolist(),
        }
        (tmp / "state.json").write_text(json.dumps(state))
        self.save_adapter(tmp / "adapter")
        return checkpoints.commit(root, tmp, final)

    def load_checkpoint(self, path: Path | None = None) -> None:
        """Resume from `path`, or from the newest complete checkpoint: one that a kill left half-written
        (a missing or truncated file, a `latest` pointing nowhere) is reported and the one before used."""
        if path is not None:
            return self._load_checkpoint(path)
        root = self.out / "checkpoints"
        candidates = checkpoints.newest_first(root)
        if not candidates:
            raise FreePropInputError(f"{self.out}: no checkpoint to resume from; drop --resume")
        for candidate in candidates:
            try:
                return self._load_checkpoint(candidate)
            except CheckpointMismatch:  # a complete checkpoint of another config: no older one will fit either
                raise
            except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
                print(f"note: {candidate.name} is incomplete ({type(err).__name__}); trying the one before",
                      file=sys.stderr)
        raise FreePropInputError(f"{root}: no complete checkpoint to resume from; start over with --overwrite")

    def _load_checkpoint(self, path: Path) -> None:
        trained = load_file(str(path / "trainable.safetensors"))
        missing = set(self.trainable_names) - set(trained)
        if missing or set(trained) - set(self.trainable_names):
            raise CheckpointMismatch(f"{path}: checkpoint does not match this config's trainable weights")
        model = self.accelerator.unwrap_model(self.model)
        params = dict(model.named_parameters())
        for name, tensor in trained.items():
            if tensor.shape != params[name].shape:
                raise CheckpointMismatch(
                    f"{path}: checkpoint does not match this config: {name} is {tuple(tensor.shape)} there, "
                    f"{tuple(params[name].shape)} here (lora.rank or the model changed?); resume with the "
                    f"settings in {self.out / 'config.json'}"
                )
        state = json.loads((path / "state.json").read_text())
        model.load_state_dict(trained, strict=False)
        if (path / "teacher.safetensors").is_file():
            self.teacher_model = copy.deepcopy(model).eval().requires_grad_(False)
            self.teacher_model.load_state_dict(load_file(str(path / "teacher.safetensors")))
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        rank_file = path / f"rng-{self.accelerator.process_index}.pt"
        rng = torch.load(rank_file if rank_file.is_file() else path / "rng.pt", weights_only=True)
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"])
        self.step, self.epoch, self.position, self.skipped = (
            state["step"],
            state["epoch"],
            state["position"],
            state["skipped"],
        )
        self._batches = None  # the stream restarts at the loaded data position
        random.setstate((3, tuple(state["python_random"]), None))
        np_state = list(np.random.get_state())
        np_state[1] = np.array(state["numpy_random"], dtype=np.uint32)
        np.random.set_state(tuple(np_state))
        if self.accelerator.is_main_process:  # steps logged after this checkpoint will be logged again
            _truncate_metrics(self.out / "metrics.jsonl", self.step)


def _leave_process_group(worker_id: int) -> None:
    """Data workers leave the trainer's process group: a Ctrl-C or `timeout` signals the whole group,
    and a worker killed by it would end the run before it saves (the main process finishes its step,
    checkpoints, then shuts the workers down). Ignoring the signals instead would also ignore the
    SIGTERM with which multiprocessing ends leftover workers at exit, and the interpreter would hang."""
    os.setpgid(0, 0)


def _stack(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError):  # a line cut by the kill
            continue
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in kept))


RUN_FILES = ("checkpoints", "metrics.jsonl", "summary.json", "config.json", "adapter", "tensorboard")


def prepare_output_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder: an existing run is continued (--resume) or, with
    --overwrite, its files are removed first (the latent cache stays: it is keyed by its settings)."""
    if out.exists() and not out.is_dir():
        raise FreePropInputError(f"output_dir {out} is a file; point output_dir at a folder")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if not existing or resume:
        return
    if not overwrite:
        raise FreePropInputError(
            f"output_dir {out} already holds a run ({', '.join(existing)}); continue it with --resume, "
            "or start over with --overwrite (deletes that run)"
        )
    if int(os.environ.get("RANK", "0")) == 0:
        for name in existing:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()


def train(cfg: TrainConfig, resume: bool = False, on_step=None, overwrite: bool = False) -> dict:
    """Build a trainer from `cfg`, optionally resume from the latest checkpoint, and train."""
    prepare_output_dir(Path(cfg.output_dir), resume, overwrite)
    return Trainer(cfg).fit(resume, on_step)
