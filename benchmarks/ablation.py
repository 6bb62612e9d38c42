"""The paper's ablation (Table 3) in miniature, on the synthetic test split, over seeds.

The paper ablates fine-tunes of one pretrained model (Fun-Control), so the arms here start from one
shared point too: the bundled model's weights — a model that already propagates edits (the table in
docs/model.md uses the stage-4 bundle: `git show 90bf700:src/freeprop/assets/freeprop-small/transformer/
diffusion_pytorch_model.safetensors > stage4.safetensors`) — with the AlphaPredictor's output heads
zeroed (α_S = 0, α_T = 1: plain RoPE again), in the `small` preset (the paper's α_S ∈ [0, 1)). Each
arm then fine-tunes for the same steps and data, once per seed, the α predictor at 10 × the learning
rate (`optim.alpha_lr_scale`: 200 steps at the paper's single rate barely move α):

    cd benchmarks && python ablation.py --make-base \
        ../src/freeprop/assets/freeprop-small/transformer/diffusion_pytorch_model.safetensors ../runs/abl3-base.safetensors && cd ..
    for seed in 0 1; do for v in baseline ast_rope full; do
      freeprop train configs/small.yaml loss.variant=$v model.weights=runs/abl3-base.safetensors seed=$seed \
          max_steps=200 optim.lr=3e-4 optim.warmup_steps=5 optim.alpha_lr_scale=10 loss.teacher=snapshot \
          loss.lambda_motion=0.5 loss.lambda_mmd=0.1 data.synthetic_pairs=1000000 save_every=50 \
          output_dir=runs/abl3-$v-s$seed
    done; done
    cd benchmarks && python ablation.py --data ../data/synth --out results --steps 1 --samples 4 \
        --start ../runs/abl3-base.safetensors --runs ../runs/abl3-*-s[01]

Runs named `[abl<N>-]<arm>-s<seed>` are grouped by arm: the table gives the mean over seeds and,
after ±, half the spread (max − min) / 2. `--start` scores the shared start as a row of its own. Metrics
per task: PSNR, SSIM, masked PSNR (local edits), flicker ratio; plus the learned α_S, α_T. Anchors:
copy-source and flow-warp. Writes benchmarks/results/ablation.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch
from propagation import TASKS, anchors, evaluate, load_model

from freeprop.data.pairs import PairDataset


def make_base(checkpoint: str, out: str) -> None:
    """The arms' shared start: `checkpoint` (full weights) with the AlphaPredictor's output heads zeroed."""
    from safetensors.torch import load_file, save_file

    state = load_file(checkpoint)
    heads = [k for k in state if k.startswith("alpha_predictor.head_")]
    for key in heads:
        state[key] = torch.zeros_like(state[key])
    save_file(state, out)
    print(f"wrote {out} ({len(state)} tensors; zeroed {', '.join(heads)})")


def run_method(model: str, steps: int | None, samples: int | None):
    pipe = load_model(model)
    pipe.set_progress_bar_config(disable=True)
    alphas = []

    def method(pair):
        out = pipe(
            pair.source,
            pair.target[0],
            num_inference_steps=steps,
            num_samples=samples,
            generator=torch.Generator().manual_seed(0),
        )
        alphas.append(out.alphas[0])
        return out.frames

    return method, alphas


def summarise(per_seed: list[dict]) -> dict:
    """Mean and half-spread over seeds of every (task, metric); no spread for a single run."""
    out = {}
    for task in per_seed[0]:
        out[task] = {}
        for key in per_seed[0][task]:
            values = [r[task][key] for r in per_seed if key in r.get(task, {})]
            spread = float((max(values) - min(values)) / 2) if len(values) > 1 else None
            out[task][key] = (float(np.mean(values)), spread)
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--runs", nargs="*", default=[], help="training output dirs named <arm>-s<seed>")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--steps", type=int, help="sampling steps (default: the model's own)")
    parser.add_argument("--samples", type=int, help="samples averaged per clip (default: the model's own)")
    parser.add_argument("--start", help="the arms' shared start (--make-base's OUT): scored as a row of its own")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--make-base", nargs=2, metavar=("CHECKPOINT", "OUT"), help="write the arms' start and exit"
    )
    args = parser.parse_args()
    if args.make_base:
        make_base(*args.make_base)
        return

    dataset = PairDataset(args.data, split="test")
    base = anchors()
    results = {
        name: {"mean": evaluate(base[name], dataset, args.pairs)}
        for name in ("copy-source", "flow-warp (residual)")
    }
    models = [("start (no fine-tune)", None, args.start)] if args.start else []
    for run in map(Path, args.runs):
        match = re.fullmatch(r"(?:abl\d*-)?(.+)-s(\d+)", run.name)
        arm, seed = (match.group(1), int(match.group(2))) if match else (run.name, None)
        models.append((arm, seed, str(run / "pipeline")))
    arms: dict[str, dict] = {}
    for arm, seed, model in models:
        method, alphas = run_method(model, args.steps, args.samples)
        scores = evaluate(method, dataset, args.pairs)
        scores["alpha"] = {
            "alpha_s": float(np.mean([a[0] for a in alphas])),
            "alpha_t": float(np.mean([a[1] for a in alphas])),
        }
        arms.setdefault(arm, {})[seed] = scores
        print(model, json.dumps({t: {k: round(v, 3) for k, v in m.items()} for t, m in scores.items()}), flush=True)

    summaries = {arm: summarise(list(per_seed.values())) for arm, per_seed in arms.items()}
    table = format_table(results, arms, summaries)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(
        json.dumps({"anchors": results, "arms": arms, "summary": summaries}, indent=1)
    )
    (out / "ablation.md").write_text(f"Synthetic test split, first {args.pairs} pairs.\n\n{table}\n")


def paired_gain(per_seed: dict, baseline: dict) -> tuple[float, float] | None:
    """Mean PSNR minus the baseline arm's *of the same seed* (same data order and noise), mean ± half
    spread over the seeds both have: a seed's luck cancels, so this is tighter than the arms' spreads."""
    seeds = [s for s in per_seed if s is not None and s in baseline]
    if not seeds:
        return None
    gains = [per_seed[s]["mean"]["psnr"] - baseline[s]["mean"]["psnr"] for s in seeds]
    return float(np.mean(gains)), float((max(gains) - min(gains)) / 2)


def format_table(results: dict, arms: dict, summaries: dict) -> str:
    """Markdown: the anchors, then one row per arm (mean ± half spread over seeds)."""

    def cell(m, key):
        if key not in m:
            return "–"
        mean, spread = m[key] if isinstance(m[key], tuple) else (m[key], None)
        return f"{mean:.2f}" + (f" ± {spread:.2f}" if spread is not None else "")

    def tasks(r):
        return " | ".join(" / ".join(cell(r[t], k) for k in ("psnr", "masked_psnr", "flicker_ratio")) for t in TASKS)

    lines = [
        "| method | seeds | " + " | ".join(f"{t} PSNR / mPSNR / flicker" for t in TASKS)
        + " | mean PSNR | Δ vs baseline, same seed | α_S / α_T |",
        "|---|---|" + "---|" * (len(TASKS) + 3),
    ]
    for name, result in results.items():
        lines.append(f"| {name} | – | {tasks(result['mean'])} | {cell(result['mean']['mean'], 'psnr')} | – | – |")
    for arm, s in summaries.items():
        gain = paired_gain(arms[arm], arms.get("baseline", {})) if arm != "baseline" else None
        gain_cell = "–" if gain is None else f"{gain[0]:+.2f} ± {gain[1]:.2f}"
        alpha = f"{cell(s['alpha'], 'alpha_s')} / {cell(s['alpha'], 'alpha_t')}"
        lines.append(f"| {arm} | {len(arms[arm])} | {tasks(s)} | {cell(s['mean'], 'psnr')} | {gain_cell} | {alpha} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
