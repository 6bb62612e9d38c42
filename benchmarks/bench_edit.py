"""End-to-end latency and peak memory of an edit, split by stage.

    python benchmarks/bench_edit.py                      # tiny model, CPU, 17 frames at 64x64 (its native clip)
    python benchmarks/bench_edit.py --model path/to/pipeline --frames 81 --size 480x832
    python benchmarks/bench_edit.py --denoise-step --device cuda --dtype bf16 --attention-backend flash
                                                         # 1.3B preset (random weights), one denoising step
                                                         # at 480p x 81 frames (32,760 tokens) + peak GPU memory

Stages: read (PyAV decode + first-frame image), resize, encode, denoise, decode (codec), write (H.264).
Each figure is the median over `--repeats` runs after one warm-up, all in this process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from freeprop.cli.common import positive_int
from freeprop.pipeline import load_pipeline
from freeprop.video import read_image, read_video, write_image, write_video


def synthetic_inputs(folder: Path, frames: int, height: int, width: int) -> tuple[Path, Path]:
    yy, xx = np.mgrid[:height, :width]
    clip = (
        np.stack(
            [
                np.stack(
                    [
                        127 + 100 * np.sin((xx + 3 * t) / 7),
                        127 + 100 * np.cos((yy + 2 * t) / 5),
                        127 + 60 * np.sin((xx + yy) / 11),
                    ],
                    -1,
                )
                for t in range(frames)
            ]
        )
        .clip(0, 255)
        .astype(np.uint8)
    )
    write_video(folder / "source.mp4", clip, fps=16)
    write_image(folder / "edit.png", 255 - clip[0])
    return folder / "source.mp4", folder / "edit.png"


def bench_edit(args) -> None:
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    height, width = (int(v) for v in args.size.split("x"))
    pipe = load_pipeline(args.model, torch_dtype=dtype).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    with tempfile.TemporaryDirectory() as tmp:
        source, edit = synthetic_inputs(Path(tmp), args.frames, height, width)
        runs = []
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            video, first = read_video(source), read_image(edit)
            t1 = time.perf_counter()
            out = pipe(
                video.frames,
                first,
                num_inference_steps=args.steps,
                num_samples=args.samples,
                identity_correction=args.identity_correction,
                correction_gate=args.correction_gate,
                generator=torch.Generator().manual_seed(0),
            )
            t2 = time.perf_counter()
            write_video(Path(tmp) / "out.mp4", out.frames, fps=video.fps)
            t3 = time.perf_counter()
            if i:  # the first run warms up
                runs.append({"read": t1 - t0, **out.timings, "write": t3 - t2, "total": t3 - t0})
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"model={args.model} device={args.device} dtype={args.dtype} {args.frames} frames {height}x{width} "
        f"steps={args.steps or 'own'} samples={args.samples or 'own'} threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    for stage, seconds in med.items():
        share = "" if stage == "total" else f"  {100 * seconds / med['total']:5.1f} %"
        print(f"  {stage:<8} {seconds * 1000:9.1f} ms{share}")
    print(f"  peak RSS {peak_mb:.0f} MiB")


def bench_denoise_step(args) -> None:
    """One denoising step of the 1.3B preset (random weights) at 480p x 81 frames: time and peak memory."""
    from freeprop.models import build_transformer

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = torch.device(args.device)
    with torch.device(device):
        model = build_transformer("wan2.1-fun-1.3b-control").to(dtype).eval()
    if args.attention_backend:
        model.set_attention_backend(args.attention_backend)
    x = torch.randn(1, 52, 21, 60, 104, device=device, dtype=dtype)  # 81 frames at 480x832 → 21 x 60 x 104
    text = torch.randn(1, 512, 4096, device=device, dtype=dtype)
    image = torch.randn(1, 257, 1280, device=device, dtype=dtype)
    t = torch.tensor([500], device=device)
    times = []
    for i in range(args.repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        with torch.no_grad():
            model(x, t, text, image)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    print(
        f"1.3B preset, 32,760 tokens, {args.dtype}, backend={args.attention_backend or 'native'}: "
        f"{statistics.median(times):.3f} s/step (median of {args.repeats}), peak {peak:.1f} GiB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--samples", type=positive_int, help="samples averaged (default: the model's own)")
    parser.add_argument("--identity-correction", type=float, help="0–1 (default: the model's own)")
    parser.add_argument("--correction-gate", type=float, help="grey levels, 0: off (default: the model's own)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--attention-backend")
    parser.add_argument("--denoise-step", action="store_true", help="time one 1.3B denoising step instead")
    args = parser.parse_args()
    bench_denoise_step(args) if args.denoise_step else bench_edit(args)
