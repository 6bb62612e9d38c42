"""The paper's ablation (Table 3) in miniature, on the synthetic test split, with anchors.

The paper ablates fine-tunes of one pretrained model (Fun-Control), so the arms here start from one
shared point too: the bundled run's FM-only checkpoint at step 700 (before its distillation starts),
with the AlphaPredictor's output heads zeroed (α_S = 0, α_T = 1: plain RoPE again). Each arm then
fine-tunes for the same steps, data and seed:

    python benchmarks/ablation.py --make-base runs/keep/step-0000700/trainable.safetensors runs/abl-base.safetensors
    for v in baseline ast_rope full; do
      freeprop train configs/small.yaml loss.variant=$v model.weights=runs/abl-base.safetensors max_steps=200 \
          optim.lr=3e-4 optim.warmup_steps=20 loss.distill_start_step=0 loss.distill_warmup_steps=50 loss.teacher=snapshot \
          loss.lambda_motion=0.5 loss.lambda_mmd=0.1 \
          save_every=1000 output_dir=runs/abl-$v
    done
    python benchmarks/ablation.py --runs runs/abl-baseline runs/abl-ast_rope runs/abl-full --bundled

Every method edits the same test pairs (held-out shapes, textures and styles included) from the
ground truth's first frame; per task it reports PSNR, SSIM, masked PSNR (local edits) and the
flicker ratio (1 = as steady as the truth). Anchors: copy-source, frozen-first-frame, flow-warp
(chained), and the bundled model. Writes a Markdown table and JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from freeprop.baselines.flow_warp import propagate
from freeprop.data.pairs import PairDataset
from freeprop.eval.metrics.ground_truth import flicker_ratio, psnr, ssim
from freeprop.pipeline import load_pipeline

METRICS = ("psnr", "ssim", "masked_psnr", "flicker_ratio")


def evaluate(method, dataset, limit: int) -> dict[str, dict[str, float]]:
    per_task: dict[str, dict[str, list[float]]] = {}
    for i in range(min(limit, len(dataset))):
        pair = dataset[i]
        out = method(pair)
        scores = {
            "psnr": psnr(out, pair.target),
            "ssim": ssim(out, pair.target),
            "flicker_ratio": flicker_ratio(out, pair.target),
        }
        if pair.mask is not None and pair.mask.any():
            scores["masked_psnr"] = psnr(out, pair.target, pair.mask)
        for key, value in scores.items():
            per_task.setdefault(pair.task, {}).setdefault(key, []).append(value)
    return {
        task: {k: float(np.mean([v for v in vals if np.isfinite(v)])) for k, vals in m.items()}
        for task, m in per_task.items()
    }


def model_method(path: str, steps: int):
    pipe = load_pipeline(path)
    pipe.set_progress_bar_config(disable=True)
    return lambda pair: (
        pipe(
            pair.source, pair.target[0], num_inference_steps=steps, generator=torch.Generator().manual_seed(0)
        ).frames
    )


def make_base(checkpoint: str, out: str) -> None:
    """The arms' shared start: `checkpoint` (full weights) with the AlphaPredictor's output heads zeroed."""
    from safetensors.torch import load_file, save_file

    state = load_file(checkpoint)
    heads = [k for k in state if k.startswith("alpha_predictor.head_")]
    for key in heads:
        state[key] = torch.zeros_like(state[key])
    save_file(state, out)
    print(f"wrote {out} ({len(state)} tensors; zeroed {', '.join(heads)})")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--runs", nargs="*", default=[], help="training output dirs (each has pipeline/)")
    parser.add_argument("--bundled", action="store_true", help="also evaluate the bundled model")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--make-base", nargs=2, metavar=("CHECKPOINT", "OUT"), help="write the arms' start and exit"
    )
    args = parser.parse_args()
    if args.make_base:
        make_base(*args.make_base)
        return

    dataset = PairDataset(args.data, split="test")
    methods = {
        "copy-source": lambda pair: pair.source,
        "frozen-first-frame": lambda pair: np.repeat(pair.target[:1], len(pair.source), axis=0),
        "flow-warp": lambda pair: propagate(pair.source, pair.target[0]),
    }
    if args.bundled:
        from freeprop.demo import default_model

        methods["bundled model"] = model_method(default_model(), args.steps)
    for run in args.runs:
        methods[Path(run).name] = model_method(str(Path(run) / "pipeline"), args.steps)

    results = {}
    for name, method in methods.items():
        results[name] = evaluate(method, dataset, args.pairs)
        print(
            name,
            json.dumps({t: {k: round(v, 3) for k, v in m.items()} for t, m in results[name].items()}),
            flush=True,
        )

    tasks = ("swap", "removal", "modification", "stylization")
    lines = [
        "| method | " + " | ".join(f"{t} PSNR / SSIM / mPSNR / flicker" for t in tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for name, per_task in results.items():
        cells = []
        for t in tasks:
            m = per_task.get(t, {})
            cells.append(
                " / ".join(
                    "–" if k not in m else f"{m[k]:.2f}" if k != "ssim" else f"{m[k]:.3f}" for k in METRICS
                )
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    (out / "ablation.md").write_text(
        f"Synthetic test split, first {args.pairs} pairs, {args.steps} steps.\n\n{table}\n"
    )


if __name__ == "__main__":
    main()
