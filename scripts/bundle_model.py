"""Copy a trained `small` run into the package as the bundled default model.

    python scripts/bundle_model.py runs/small [--steps N] [--samples K] [--identity-correction C] [--correction-gate TAU] [--dtype fp16] [--out src/freeprop/assets/freeprop-small]

Loads `RUN/pipeline` (written by `freeprop train` with `full_finetune: true`), records its native
clip (64×64, 17 frames) and the sampling chosen for it (an option not given keeps what `RUN/pipeline`
stores: the sampling of the pipeline the run started from) in `model_index.json`, and saves it with
safetensors, in fp16 by default (the AlphaPredictor and the norms stay fp32, as diffusers keeps them). The package budget is 20 MB.
The run's `config.json` and `summary.json` (and a soup's `mixed_from.json`) are copied beside it for provenance.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from freeprop import FreePropPipeline
from freeprop.errors import FreePropInputError, run_script

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("run")
parser.add_argument(
    "--dtype", choices=["fp16", "fp32"], default="fp16", help="stored weights (fp16 halves the size)"
)
parser.add_argument("--steps", type=int, help="the model's default sampling steps (chosen on the val split)")
parser.add_argument("--samples", type=int, help="samples averaged per window (chosen on the val split)")
parser.add_argument("--identity-correction", type=float,
                    help="share of the model's change to an unedited video taken off (chosen on the val split)")
parser.add_argument("--correction-gate", type=float,
                    help="grey levels: the correction fades out where the edit moved the output (chosen on val and real)")
parser.add_argument(
    "--out", default=str(Path(__file__).resolve().parents[1] / "src/freeprop/assets/freeprop-small")
)


def main() -> None:
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    missing = [name for name in ("config.json", "summary.json", "pipeline/model_index.json") if not (run / name).is_file()]
    if missing:
        raise FreePropInputError(f"{run}: not a `freeprop train` run with full_finetune (no {', '.join(missing)})")
    sampling = {"num_inference_steps": args.steps, "num_samples": args.samples, "identity_correction": args.identity_correction,
                "correction_gate": args.correction_gate}
    config = json.loads((run / "config.json").read_text())
    pipe = FreePropPipeline.from_pretrained(
        run / "pipeline",
        torch_dtype=torch.float16 if args.dtype == "fp16" else torch.float32,
        sample_size=[config["data"]["height"], config["data"]["width"]],
        window_frames=config["data"]["num_frames"],
        **{k: v for k, v in sampling.items() if v is not None},  # None: what RUN/pipeline stores
    )
    shutil.rmtree(out, ignore_errors=True)
    pipe.save_pretrained(out)
    for name in ("config.json", "summary.json"):
        shutil.copy(run / name, out / f"training_{name}")
    if (run / "mixed_from.json").is_file():  # a soup's sources and weights (scripts/mix_weights.py)
        shutil.copy(run / "mixed_from.json", out / "training_mixed_from.json")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundled {run} → {out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    sys.exit(run_script(main, "bundle_model.py"))
