"""Does a model carry the edit? Ground-truth scores against the trivial and classical baselines.

Every method edits the same pairs from the ground truth's first frame; per task (and averaged over the
four tasks) it reports PSNR, SSIM, masked PSNR inside the edit (local tasks) and the flicker ratio
(mean frame-to-frame change of the output over that of the truth, pooled over the task's pairs;
1 = as steady as the truth), then checks issue 11's targets for each model. A second table gives the
PSNR outside the edit (local tasks): how much a method changes what the edit never touched.

- masked PSNR ≥ copy-source's + 3 dB in every local task (the edit is carried);
- PSNR above copy-source in every task, and above flow-warp on the four-task average;
- flicker ratio ≤ 1.5 in every task.

    freeprop data synth data/synth --real 48
    python benchmarks/propagation.py --split test --split real --bundled --steps 1 4 20 --samples 1 4

Anchors: copy-source, frozen-first-frame, flow-warp carrying pixels and carrying the residual.
Writes `propagation.json` and `propagation.md` under --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from freeprop.baselines.flow_warp import propagate
from freeprop.data.pairs import PairDataset
from freeprop.defaults import LOCAL_TASKS as LOCAL
from freeprop.defaults import TASKS
from freeprop.errors import run_script
from freeprop.eval.metrics.ground_truth import flicker, psnr, ssim

METRICS = ("psnr", "ssim", "masked_psnr", "flicker_ratio")


def evaluate(method, dataset, limit: int) -> dict[str, dict[str, float]]:
    """Mean metrics per task (and `mean`, the average of the task means) of `method(pair) → frames`."""
    per_task: dict[str, dict[str, list[float]]] = {}
    for i in range(min(limit, len(dataset))):
        pair = dataset[i]
        out = method(pair)
        scores = {
            "psnr": psnr(out, pair.target),
            "ssim": ssim(out, pair.target),
            "flicker": flicker(out),
            "flicker_target": flicker(pair.target),
        }
        if pair.mask is not None and pair.mask.any():
            scores["masked_psnr"] = psnr(out, pair.target, pair.mask)
            scores["outside_psnr"] = psnr(out, pair.target, pair.mask == 0)
        for key, value in scores.items():
            per_task.setdefault(pair.task, {}).setdefault(key, []).append(value)
    result = {}
    for task, m in per_task.items():
        result[task] = {k: float(np.mean([v for v in vals if np.isfinite(v)])) for k, vals in m.items()}
        # a ratio of means: a near-still truth (a removal in a still scene) must not blow up the average
        result[task]["flicker_ratio"] = result[task].pop("flicker") / max(
            1e-9, result[task].pop("flicker_target")
        )
    result["mean"] = {
        k: float(np.mean([result[t][k] for t in result if k in result[t]]))
        for k in ("psnr", "ssim", "flicker_ratio")
    }
    return result


def load_model(path: str, preset: str = "small"):
    """A pipeline folder; a training checkpoint of a full fine-tune (`RUN/checkpoints/step-N`), loaded
    into the model its run started from (`RUN/config.json`'s `model.pipeline`: the same transformer
    config, e.g. the signed α_S range of the bundle, which the bare preset does not have); or a
    `.safetensors` file of full weights, loaded into `preset`."""
    from freeprop.pipeline import load_pipeline

    source = Path(path)
    if source.suffix == ".safetensors":
        weights, start = source, {}
    elif (source / "trainable.safetensors").is_file():
        weights, start = source / "trainable.safetensors", _run_start(source.parent.parent)
    else:
        return load_pipeline(path)
    from safetensors.torch import load_file

    pipe = load_pipeline(start.get("pipeline") or start.get("preset") or preset)
    _, unexpected = pipe.transformer.load_state_dict(load_file(str(weights)), strict=False)
    if unexpected:
        raise ValueError(f"{path}: weights the model does not have: {unexpected[:3]}")
    return pipe


def _run_start(run: Path) -> dict:
    """`RUN/config.json`'s `model` section, a relative `pipeline` made to work from any directory: it is
    relative to where training ran, which is RUN with the run's `output_dir` taken off."""
    config_file = run / "config.json"
    if not config_file.is_file():
        return {}
    config = json.loads(config_file.read_text())
    start = dict(config["model"])
    pipeline = start.get("pipeline")
    relative = pipeline and not Path(pipeline).is_absolute() and not Path(config["output_dir"]).is_absolute()
    if relative and not Path(pipeline).exists():
        workdir = run.resolve().parents[len(Path(config["output_dir"]).parts) - 1]
        start["pipeline"] = str(workdir / pipeline)
    return start


def model_method(path: str, steps: int | None, seed: int = 0, samples: int | None = None,
                 correction: float | None = None, gate: float | None = None):
    """`steps` / `samples` / `correction` (identity correction) / `gate` (its gate, grey levels): None = the
    model's stored defaults."""
    pipe = load_model(path)
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    return lambda pair: (
        pipe(
            pair.source,
            pair.target[0],
            num_inference_steps=steps,
            num_samples=samples,
            identity_correction=correction,
            correction_gate=gate,
            generator=torch.Generator().manual_seed(seed),
        ).frames
    )


def anchors() -> dict:
    return {
        "copy-source": lambda pair: pair.source,
        "frozen-first-frame": lambda pair: np.repeat(pair.target[:1], len(pair.source), axis=0),
        "flow-warp (pixels)": lambda pair: propagate(pair.source, pair.target[0], carry="pixels"),
        "flow-warp (residual)": lambda pair: propagate(pair.source, pair.target[0], carry="residual"),
    }


def check_targets(scores: dict, copy: dict, flow: dict) -> dict[str, bool]:
    """Issue 11's targets for one model's scores against copy-source's and flow-warp's."""
    return {
        "masked_psnr >= copy + 3 dB (local tasks)": all(
            scores[t].get("masked_psnr", -np.inf) >= copy[t]["masked_psnr"] + 3 for t in LOCAL if t in scores
        ),
        "psnr > copy (every task)": all(scores[t]["psnr"] > copy[t]["psnr"] for t in TASKS if t in scores),
        "mean psnr > flow-warp": scores["mean"]["psnr"] > flow["mean"]["psnr"],
        "flicker ratio <= 1.5 (every task)": all(
            scores[t]["flicker_ratio"] <= 1.5 for t in TASKS if t in scores
        ),
    }


def table(results: dict) -> str:
    columns = (*TASKS, "mean")
    lines = [
        "| method | " + " | ".join(f"{t} PSNR / SSIM / mPSNR / flicker" for t in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, per_task in results.items():
        cells = []
        for t in columns:
            m = per_task.get(t, {})
            cells.append(
                " / ".join(
                    "–" if k not in m else f"{m[k]:.3f}" if k == "ssim" else f"{m[k]:.2f}" for k in METRICS
                )
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def outside_table(results: dict) -> str:
    """PSNR outside the edit mask per local task: what a method changes that the edit did not."""
    lines = ["| method | " + " | ".join(f"{t} PSNR outside the edit" for t in LOCAL) + " |", "|---|" + "---|" * len(LOCAL)]
    for name, per_task in results.items():
        cells = [f"{per_task[t]['outside_psnr']:.2f}" if "outside_psnr" in per_task.get(t, {}) else "–" for t in LOCAL]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--split", action="append", help="pair-format split(s) (default: test and real)")
    parser.add_argument("--model", action="append", default=[], help="NAME=PIPELINE_FOLDER (repeatable)")
    parser.add_argument("--bundled", action="store_true", help="also evaluate the bundled model")
    parser.add_argument("--steps", type=int, nargs="+", default=[0], help="sampling steps for every model (0: its own)")
    parser.add_argument("--samples", type=int, nargs="+", default=[0], help="samples averaged (0: the model's own)")
    parser.add_argument("--correction", type=float, nargs="+", default=[-1],
                        help="identity correction(s) (-1: the model's own)")
    parser.add_argument("--gate", type=float, nargs="+", default=[-1],
                        help="identity correction gate(s) in grey levels (0: off; -1: the model's own)")
    parser.add_argument("--pairs", type=int, default=80, help="pairs per split (at most)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    models = dict(m.split("=", 1) for m in args.model)
    if args.bundled:
        from freeprop.demo import default_model

        models["bundled"] = default_model()
    report, lines = {}, []
    for split in args.split or ["test", "real"]:
        dataset = PairDataset(args.data, split=split)
        methods = anchors()
        for name, path in models.items():
            for steps, samples, c, gate in itertools.product(args.steps, args.samples, args.correction, args.gate):
                chosen = "".join(f", {key} {v:g}" for key, v in (("c", c), ("gate", gate)) if v >= 0)
                label = f"{name} ({steps or 'own'} steps × {samples or 'own'}{chosen})"
                methods[label] = model_method(path, steps or None, samples=samples or None,
                                              correction=None if c < 0 else c, gate=None if gate < 0 else gate)
        results, timing = {}, {}
        for name, method in methods.items():
            start = time.perf_counter()
            results[name] = evaluate(method, dataset, args.pairs)
            timing[name] = (time.perf_counter() - start) / min(args.pairs, len(dataset))
            print(f"[{split}] {name}: mean PSNR {results[name]['mean']['psnr']:.2f} dB", flush=True)
        copy, flow = results["copy-source"], results["flow-warp (residual)"]
        targets = {n: check_targets(r, copy, flow) for n, r in results.items() if n not in anchors()}
        report[split] = {
            "pairs": min(args.pairs, len(dataset)),
            "results": results,
            "targets": targets,
            "seconds_per_pair": timing,
        }
        lines += [f"## split `{split}` ({report[split]['pairs']} pairs)", "", table(results), "",
                  outside_table(results), ""]
        for name, checks in targets.items():
            lines.append(f"- {name}: " + "; ".join(f"{k} {'✓' if ok else '✗'}" for k, ok in checks.items()))
        lines.append("")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "propagation.json").write_text(json.dumps(report, indent=1))
    (out / "propagation.md").write_text(
        f"`python benchmarks/propagation.py {' '.join(sys.argv[1:])}`\n\n{text}\n"
    )


if __name__ == "__main__":
    sys.exit(run_script(main, "propagation.py"))
