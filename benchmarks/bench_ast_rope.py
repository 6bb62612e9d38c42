"""AST-RoPE overhead: FreePropTransformer forward vs stock diffusers WanTransformer3DModel, same weights.

    python benchmarks/bench_ast_rope.py                       # CPU: 1.3B width, 2 layers, 4,096 tokens
    python benchmarks/bench_ast_rope.py --device cuda --dtype bf16 --layers 30 --frames 21 --height 60 --width 104
                                                              # GPU: 480p × 81 frames = 32,760 tokens

Both models are timed in one run, alternating, after a warm-up; the script prints the median of each
and their ratio (targets: ≤ 1.05 on CPU, ≤ 1.03 on GPU). FreeProp runs its full path: the AlphaPredictor
on the source latent, per-sample per-head-type RoPE tables, and the per-head rotation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import WanTransformer3DModel

from freeprop.models import expand_input_channels, get_preset


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4, help="latent frames F'")
    parser.add_argument("--height", type=int, default=64, help="latent height (tokens = F'·h/2·w/2)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    device = torch.device(args.device)

    # 1. Stock Fun-Control-shaped Wan model (1.3B width) and FreeProp expanded from it: same weights.
    cfg = get_preset("wan2.1-fun-1.3b-control", num_layers=args.layers)
    kwargs = cfg.transformer_kwargs()
    stock_kwargs = {
        k: kwargs[k]
        for k in (
            "patch_size",
            "num_attention_heads",
            "attention_head_dim",
            "out_channels",
            "text_dim",
            "freq_dim",
            "ffn_dim",
            "num_layers",
            "cross_attn_norm",
            "qk_norm",
            "eps",
            "image_dim",
            "added_kv_proj_dim",
        )
    }
    torch.manual_seed(0)
    stock = WanTransformer3DModel(in_channels=3 * cfg.latent_channels, **stock_kwargs).eval()
    ours = expand_input_channels(stock, mask_channels=cfg.mask_channels).eval()
    stock, ours = stock.to(device, dtype), ours.to(device, dtype)

    c, f, h, w = cfg.latent_channels, args.frames, args.height, args.width
    tokens = f * (h // 2) * (w // 2)
    x = torch.randn(1, cfg.in_channels, f, h, w, device=device, dtype=dtype)
    t = torch.tensor([500], device=device)
    text = torch.randn(1, 512, cfg.text_dim, device=device, dtype=dtype)
    image = torch.randn(1, 257, cfg.image_dim, device=device, dtype=dtype)

    def run(model, inputs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model(inputs, t, text, image)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # 2. Warm up both, then alternate.
    run(stock, x[:, : 3 * c])
    run(ours, x)
    times = {"stock": [], "freeprop": []}
    for i in range(args.repeats):
        order = [("stock", stock, x[:, : 3 * c]), ("freeprop", ours, x)]
        for name, model, inputs in order if i % 2 == 0 else order[::-1]:
            times[name].append(run(model, inputs))

    # 3. Report.
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"device={device} dtype={args.dtype} layers={args.layers} dim={cfg.dim} heads={cfg.num_attention_heads}x"
        f"{cfg.attention_head_dim} tokens={tokens} threads={torch.get_num_threads()} repeats={args.repeats}"
    )
    for name in times:
        print(
            f"  {name:<9} median {med[name] * 1000:9.1f} ms   runs "
            + " ".join(f"{v * 1000:.0f}" for v in times[name])
        )
    print(
        f"  ratio freeprop/stock = {med['freeprop'] / med['stock']:.3f}  (overhead {100 * (med['freeprop'] / med['stock'] - 1):+.1f} %)"
    )


if __name__ == "__main__":
    main()
