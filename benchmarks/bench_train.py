"""Training step cost of the paper's variants on the same batch: baseline vs ast_rope vs full.

    python benchmarks/bench_train.py                       # tiny preset and a 1.3B-width 2-layer model, CPU
    python benchmarks/bench_train.py --shapes wide --repeats 5

For each shape, one Trainer per variant is built on the same random latent batch (same weights, same
seed); steps are timed alternating between variants, median of `--repeats` after a warm-up. The two
distillation losses are also timed alone (forward + backward on the block features the full step
produces). Peak memory is read per variant in a fresh subprocess (`VmHWM` after two steps); the
losses' own memory is how much that peak grows when they run alone afterwards (0 = they fit in
memory the step had already used).
Targets: full ≤ 1.35× baseline step time; the two losses ≤ 5 % of the full step's time and memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from freeprop.training.config import load_config
from freeprop.training.losses import mmd_loss, motion_loss, prepare_features
from freeprop.training.recipe import Trainer

SHAPES = {  # name: (preset, overrides, latent (C, F', h, w))
    "tiny": ("tiny", {}, (12, 17, 32, 32)),
    "wide": ("wan2.1-fun-1.3b-control", {"num_layers": 2, "image_dim": None}, (16, 5, 32, 32)),
}


class RandomLatents(torch.utils.data.Dataset):
    def __init__(self, shape, text_dim, n=4):
        g = torch.Generator().manual_seed(0)
        self.items = [
            {
                "source": torch.randn(shape, generator=g),
                "target": torch.randn(shape, generator=g),
                "first_frame": torch.randn(shape[0], 1, *shape[2:], generator=g),
                "text": torch.randn(512, text_dim, generator=g),
            }
            for _ in range(n)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def make_trainer(shape_name: str, variant: str, out: str) -> Trainer:
    preset, overrides, latent = SHAPES[shape_name]
    cfg = load_config(
        None,
        [
            f"output_dir={out}/{variant}",
            f"model.preset={preset}",
            f"loss.variant={variant}",
            "lora.rank=128",
            "lora.alpha=128",
            "max_steps=1000",
            "log_every=1000",
            "save_every=100000",
            "loss.k_s=2",
        ],
    )
    text_dim = 16 if preset == "tiny" else 4096
    return Trainer(cfg, dataset=RandomLatents(latent, text_dim), model_overrides=overrides or None)


def timed_step(trainer: Trainer) -> float:
    start = time.perf_counter()
    trainer._train_step()
    return time.perf_counter() - start


def loss_only_time(trainer: Trainer, batch) -> float:
    """Forward + backward of the two distillation losses alone, on the full step's block features."""
    model = trainer.model
    blocks = trainer.distill_blocks
    f, h, w = trainer._token_grid(batch["target"])
    with torch.no_grad():
        from freeprop.models.transformer import build_ffp_input

        x = build_ffp_input(batch["target"], batch["source"], batch["first_frame"], model.mask_channels)
        feats = model(x, torch.tensor([500.0]), batch["text"], return_features=blocks).features
    student = {b: feats[b].clone().requires_grad_() for b in blocks}
    start = time.perf_counter()
    total = 0
    for b in blocks:
        s_tok = prepare_features(student[b], f, h, w, trainer.cfg.loss.k_s)
        t_tok = prepare_features(feats[b], f, h, w, trainer.cfg.loss.k_s)
        total = total + motion_loss(s_tok, t_tok) + mmd_loss(s_tok, t_tok)
    total.backward()
    return time.perf_counter() - start


def peak_memory(shape_name: str, variant: str) -> dict[str, float]:
    """Peak RSS (MiB) of a fresh process running two steps; for `full`, also the growth of the peak
    while the two distillation losses run alone after those steps (their own memory)."""
    code = (
        "import re, tempfile, benchmarks.bench_train as b\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked parent
        "def peak(): return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) / 1024\n"
        f"t = b.make_trainer({shape_name!r}, {variant!r}, tempfile.mkdtemp())\n"
        "t._train_step(); t._train_step(); step_peak = peak()\n"
        f"if {variant!r} == 'full': b.loss_only_time(t, t._next_batch())\n"
        "print(step_peak, peak() - step_peak)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    step_peak, loss_growth = (float(v) for v in result.stdout.strip().splitlines()[-1].split())
    return {"peak": step_peak, "loss_growth": loss_growth}


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    report = {}
    for shape in args.shapes:
        with tempfile.TemporaryDirectory() as out:
            variants = ["baseline", "ast_rope", "full"]
            trainers = {v: make_trainer(shape, v, out) for v in variants}
            for t in trainers.values():  # same seed → same initial weights in every variant
                t._train_step()  # warm-up
            times = {v: [] for v in variants}
            for i in range(args.repeats):
                for v in variants if i % 2 == 0 else variants[::-1]:
                    times[v].append(timed_step(trainers[v]))
            batch = trainers["full"]._next_batch()
            loss_times = [loss_only_time(trainers["full"], batch) for _ in range(args.repeats)]
        med = {v: statistics.median(ts) for v, ts in times.items()}
        row = {f"{v}_s": round(med[v], 4) for v in variants}
        row |= {
            "full_over_baseline": round(med["full"] / med["baseline"], 3),
            "ast_over_baseline": round(med["ast_rope"] / med["baseline"], 3),
            "losses_s": round(statistics.median(loss_times), 4),
            "losses_share_of_full": round(statistics.median(loss_times) / med["full"], 4),
        }
        if not args.no_memory:
            memory = {v: peak_memory(shape, v) for v in variants}
            row |= {f"{v}_peak_mib": round(m["peak"]) for v, m in memory.items()}
            row["losses_extra_peak_mib"] = round(memory["full"]["loss_growth"], 1)
        report[shape] = row
        print(shape, json.dumps(row), flush=True)
    print(
        f"threads={torch.get_num_threads()} repeats={args.repeats} peak RSS per variant in a fresh process "
        f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
