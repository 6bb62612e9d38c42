"""Mix the transformer weights of trained runs into a new run folder: θ = Σ wᵢ·θᵢ (a model soup when the
weights are positive, an extrapolation when one is negative). Ours, not the paper's; docs/model.md has what it
measured (the soup of stages 17 and 18, and stage 17 pushed away from stage 16).

    python scripts/mix_weights.py OUT RUN_A=0.5 RUN_B=0.5
    python scripts/bundle_model.py OUT --steps 1 --samples 1 --identity-correction 1 --correction-gate 16 --out PACK

RUN is a `freeprop train` run folder (its `pipeline/`) or a pipeline folder (one with model_index.json);
the weights must sum to 1 and the models share one architecture. OUT gets the first run's pipeline (its
sampling, its scheduler) with the mixed weights, and the first run's config.json and summary.json, so
bundle_model.py takes it as a run. Mixed in fp32.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from freeprop import FreePropPipeline
from freeprop.errors import FreePropInputError, run_script


def pipeline_folder(path: Path) -> Path:
    for folder in (path / "pipeline", path):
        if (folder / "model_index.json").is_file():
            return folder
    raise FreePropInputError(
        f"{path}: neither a run folder (with pipeline/) nor a pipeline folder (with model_index.json)"
    )


def parse_source(text: str) -> tuple[Path, float]:
    path, _, weight = text.rpartition("=")
    try:
        value = float(weight)
    except ValueError:
        value = None
    if not path or value is None or value != value:  # value != value: nan
        raise FreePropInputError(f"{text!r}: write RUN=WEIGHT, e.g. runs/fine17k=0.5")
    return Path(path), value


def mixed_state(
    folders: list[Path], weights: list[float]
) -> tuple[FreePropPipeline, dict[str, torch.Tensor]]:
    """The first pipeline (fp32) and Σ wᵢ·θᵢ over every pipeline's transformer state."""
    pipes = [FreePropPipeline.from_pretrained(folder, torch_dtype=torch.float32) for folder in folders]
    states = [pipe.transformer.state_dict() for pipe in pipes]
    for folder, state in zip(folders[1:], states[1:]):
        if state.keys() != states[0].keys() or any(state[k].shape != v.shape for k, v in states[0].items()):
            raise FreePropInputError(
                f"{folder}: another architecture than {folders[0]}; only one model's weights mix"
            )
    mixed = {name: sum(w * state[name].float() for w, state in zip(weights, states)) for name in states[0]}
    return pipes[0], mixed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="new run folder (must not exist)")
    parser.add_argument("sources", nargs="+", metavar="RUN=WEIGHT")
    args = parser.parse_args()
    out, sources = Path(args.out), [parse_source(s) for s in args.sources]
    weights = [w for _, w in sources]
    if abs(sum(weights) - 1) > 1e-6:
        raise FreePropInputError(f"the weights sum to {sum(weights):g}; they must sum to 1")
    if out.exists():
        raise FreePropInputError(f"{out} exists; choose a new folder (inputs are never overwritten)")
    folders = [pipeline_folder(path) for path, _ in sources]  # each a run or a pipeline, before anything loads
    first_run = sources[0][0]
    if not (first_run / "config.json").is_file():
        raise FreePropInputError(
            f"{first_run}: the first source must be a run folder (bundle_model.py reads its config.json)"
        )

    pipe, mixed = mixed_state(folders, weights)
    pipe.transformer.load_state_dict(mixed)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp / "pipeline")
    for name in ("config.json", "summary.json"):
        if (first_run / name).is_file():
            shutil.copy(first_run / name, tmp / name)
    (tmp / "mixed_from.json").write_text(json.dumps({str(p): w for p, w in sources}, indent=1) + "\n")
    tmp.rename(out)
    print(f"mixed {', '.join(f'{w:g}·{p}' for p, w in sources)} → {out}")


if __name__ == "__main__":
    sys.exit(run_script(main, "mix_weights.py"))
