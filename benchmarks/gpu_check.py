"""The GPU check: what the 1.3B model costs at the paper's sizes, in one script (< 8 min on one H100).

    python benchmarks/gpu_check.py --out gpu_check.json     # CUDA, bf16, the 1.3B preset with random weights
    python benchmarks/gpu_check.py --small                  # the same code at toy sizes on the CPU (tested)

Each section prints as it finishes and lands in --out (JSON):
 1. AST-RoPE: FreeProp's forward vs stock diffusers `WanTransformer3DModel` with the same weights, at
    480p×81 (21×60×104 latents, 32,760 tokens) and 720p×81 (21×90×160, 75,600 tokens), alternating,
    median. Target ≤ 3 % overhead, goal ≤ 1 %.
 2. One denoising step (a FreeProp forward at 480p×81) with each attention backend that runs here:
    seconds and peak memory.
 3. One LoRA training step (rank 128, gradient checkpointing, bf16 autocast), `full` (AST-RoPE +
    self-distillation) vs `baseline`, on the same random latent batch: seconds and peak memory.
 4. A 2-step end-to-end edit at 480p×81 through `FreePropPipeline` (random 1.3B transformer and a
    random Wan VAE of the real architecture): seconds and peak memory.
Random weights measure cost, not quality. A section that fails is recorded and the rest still run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.bench_train's random batches

PRESET = "wan2.1-fun-1.3b-control"
FULL = {"layers": None, "shapes": {"480p": (21, 60, 104), "720p": (21, 90, 160)}, "frames": 81, "pixels": (480, 832),
        "repeats": 3, "dtype": torch.bfloat16}
SMALL = {"layers": 1, "shapes": {"480p": (2, 8, 8), "720p": (2, 8, 12)}, "frames": 5, "pixels": (32, 32),
         "repeats": 1, "dtype": torch.float32}
BACKENDS = ("native", "_native_flash", "_native_efficient", "_native_cudnn", "flash", "sage")


class Clock:
    """Wall time and peak accelerator memory of a block (memory: CUDA only)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn):
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        return seconds, peak


def _model_kwargs(sizes) -> dict:
    from freeprop.models import get_preset

    overrides = {"num_layers": sizes["layers"]} if sizes["layers"] else {}
    return get_preset(PRESET, **overrides).transformer_kwargs()


def _inputs(shape, kwargs, device, dtype, channels):
    f, h, w = shape
    return (
        torch.randn(1, channels, f, h, w, device=device, dtype=dtype),
        torch.tensor([500.0], device=device),
        torch.randn(1, 512, kwargs["text_dim"], device=device, dtype=dtype),
        torch.randn(1, 257, kwargs["image_dim"], device=device, dtype=dtype),
    )


def ast_rope_overhead(sizes, device, clock) -> dict:
    """1. Stock Fun-Control-shaped Wan vs FreeProp expanded from it (same weights), alternating."""
    from diffusers import WanTransformer3DModel

    from freeprop.models import expand_input_channels

    kwargs = _model_kwargs(sizes)
    stock_keys = ("patch_size", "num_attention_heads", "attention_head_dim", "out_channels", "text_dim", "freq_dim",
                  "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps", "image_dim", "added_kv_proj_dim")
    c = kwargs["out_channels"]
    with torch.device(device):
        stock = WanTransformer3DModel(in_channels=3 * c, **{k: kwargs[k] for k in stock_keys})
    ours = expand_input_channels(stock, mask_channels=kwargs["in_channels"] - 3 * c)
    stock, ours = stock.to(device, sizes["dtype"]).eval(), ours.to(device, sizes["dtype"]).eval()
    results = {}
    for name, shape in sizes["shapes"].items():
        x, t, text, image = _inputs(shape, kwargs, device, sizes["dtype"], kwargs["in_channels"])
        med = _alternating({"stock": (stock, x[:, : 3 * c]), "freeprop": (ours, x)}, (t, text, image), sizes, clock)
        results[name] = {"tokens": shape[0] * shape[1] * shape[2] // 4, "stock_s": med["stock"],
                         "freeprop_s": med["freeprop"], "overhead_pct": 100 * (med["freeprop"] / med["stock"] - 1)}
    return results


def _alternating(models: dict, rest: tuple, sizes, clock) -> dict[str, float]:
    """Median seconds of each `model(inputs, *rest)`, after a warm-up, alternating the order each round."""
    times = {name: [] for name in models}
    with torch.no_grad():
        for model, inputs in models.values():
            clock(lambda m=model, i=inputs: m(i, *rest))  # warm-up
        for round_ in range(sizes["repeats"]):
            for name in list(models) if round_ % 2 == 0 else list(models)[::-1]:
                model, inputs = models[name]
                times[name].append(clock(lambda m=model, i=inputs: m(i, *rest))[0])
    return {name: statistics.median(v) for name, v in times.items()}


def denoise_step(sizes, device, clock) -> dict:
    """2. One FreeProp forward at the 480p shape, per attention backend."""
    from freeprop.models import build_transformer

    with torch.device(device):
        model = build_transformer(PRESET, **({"num_layers": sizes["layers"]} if sizes["layers"] else {}))
    model = model.to(sizes["dtype"]).eval()
    kwargs = _model_kwargs(sizes)
    x, t, text, image = _inputs(sizes["shapes"]["480p"], kwargs, device, sizes["dtype"], kwargs["in_channels"])
    results = {}
    for backend in BACKENDS:
        try:
            model.set_attention_backend(backend)
            with torch.no_grad():
                clock(lambda: model(x, t, text, image))  # warm-up (and: does this backend run here?)
                runs = [clock(lambda: model(x, t, text, image)) for _ in range(sizes["repeats"])]
            results[backend] = {"seconds": statistics.median(r[0] for r in runs), "peak_gib": runs[-1][1]}
        except Exception as err:  # a backend this machine lacks (flash-attn, sage, cuDNN attention, ...)
            results[backend] = {"unavailable": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    model.set_attention_backend("native")  # diffusers keeps the last one as a process-wide default too
    return results


def train_step(sizes, device, clock) -> dict:
    """3. One optimiser step of `baseline` and `full`, LoRA 128, gradient checkpointing, bf16 autocast."""
    from benchmarks.bench_train import RandomLatents

    from freeprop.training.config import load_config
    from freeprop.training.recipe import Trainer

    kwargs = _model_kwargs(sizes)
    f, h, w = sizes["shapes"]["480p"]
    results = {}
    for variant in ("baseline", "full"):
        with tempfile.TemporaryDirectory() as out:
            cfg = load_config(None, [
                f"output_dir={out}", f"model.preset={PRESET}", f"loss.variant={variant}", "lora.rank=128",
                "lora.alpha=128", "max_steps=1000", "log_every=1000", "save_every=100000", "gradient_checkpointing=true",
                "batch_size=1", *(["mixed_precision=bf16"] if device.type == "cuda" else []),
            ])
            overrides = {"num_layers": sizes["layers"]} if sizes["layers"] else None
            data = RandomLatents((kwargs["out_channels"], f, h, w), kwargs["text_dim"], n=2)
            trainer = Trainer(cfg, dataset=data, model_overrides=overrides)
            clock(trainer._train_step)  # warm-up
            runs = [clock(trainer._train_step) for _ in range(sizes["repeats"])]
            results[variant] = {"seconds": statistics.median(r[0] for r in runs), "peak_gib": runs[-1][1]}
            del trainer
            if device.type == "cuda":
                torch.cuda.empty_cache()
    results["full_over_baseline"] = results["full"]["seconds"] / results["baseline"]["seconds"]
    return results


def end_to_end_edit(sizes, device, clock) -> dict:
    """4. `FreePropPipeline` on a 480p clip: encode, 2 UniPC steps, decode."""
    from diffusers import AutoencoderKLWan

    from freeprop.models import build_transformer
    from freeprop.pipeline import FreePropPipeline, make_scheduler

    with torch.device(device):
        transformer = build_transformer(PRESET, **({"num_layers": sizes["layers"]} if sizes["layers"] else {}))
        vae = AutoencoderKLWan() if sizes is FULL else AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    pipe = FreePropPipeline(transformer.to(sizes["dtype"]).eval(), make_scheduler(), vae=vae.eval()).to(device)
    pipe.set_progress_bar_config(disable=True)
    height, width = sizes["pixels"]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (sizes["frames"], height, width, 3), dtype=np.uint8)
    result = {}

    def edit():
        result["out"] = pipe(frames, frames[0], num_inference_steps=2, generator=torch.Generator().manual_seed(0))

    seconds, peak = clock(edit)
    out = result["out"]
    return {"seconds": seconds, "peak_gib": peak, "frames": len(out.frames),
            "stages_s": {k: round(v, 3) for k, v in out.timings.items()}}


SECTIONS = {"ast_rope_overhead": ast_rope_overhead, "denoise_step": denoise_step, "train_step": train_step,
            "end_to_end_edit": end_to_end_edit}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="toy sizes on the CPU (checks the script runs)")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    args = parser.parse_args(argv)
    sizes = SMALL if args.small else FULL
    device = torch.device("cpu" if args.small else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here; run with --small for the CPU check")
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "small": args.small,
              "torch": torch.__version__, "dtype": str(sizes["dtype"]), "sections": {}}
    clock = Clock(device)
    for name in args.sections:
        start = time.perf_counter()
        try:
            report["sections"][name] = SECTIONS[name](sizes, device, clock)
        except Exception:  # keep going: one broken section must not cost the others' figures
            report["sections"][name] = {"error": traceback.format_exc(limit=3)}
        print(f"[{time.perf_counter() - start:6.1f} s] {name}: {json.dumps(report['sections'][name], default=str)}",
              flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
