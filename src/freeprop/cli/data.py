"""`freeprop data`: synthesise, build, inspect and review datasets in the pair format."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from freeprop.cli.common import (
    add_device_options,
    device_and_dtype,
    non_negative_int,
    output_folder,
    parse_size,
    positive_int,
    share,
)
from freeprop.cli.train import EXIT_INTERRUPTED
from freeprop.defaults import PHOTO_POOLS, SYNTH
from freeprop.errors import FreePropInputError


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="datasets in the pair format (tar shards + index.parquet)")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for add in (_add_synth, _add_build, _add_review, _add_finetune_vace, _add_inspect, _add_repair):
        add(data_sub)


# ----------------------------------------------------------------------------------------------
# synth
# ----------------------------------------------------------------------------------------------


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="procedural (source, edited) pairs with exact ground truth",
        description="Swap / removal / modification (local) and stylization (global) pairs of textured scenes "
        "with camera and object motion. Deterministic by seed; splits use disjoint seeds and the test split "
        "holds out a shape, a texture and a style. Re-running resumes (done samples are skipped).",
    )
    p.add_argument("output", help="output folder")
    for split, what in (("train", "training pairs"), ("val", "validation pairs"), ("test", "test pairs")):
        default = getattr(SYNTH, split)
        p.add_argument(f"--{split}", type=non_negative_int, default=default, help=f"{what} (default {default})")
    p.add_argument(
        "--real", type=non_negative_int, default=SYNTH.real,
        help="pairs of the `real` split: photographs (scikit-learn's and matplotlib's samples) panned, "
        f"zoomed and cut out, with exact ground truth; for validation only (default {SYNTH.real})",
    )
    p.add_argument("--frames", type=positive_int, default=SYNTH.frames, help=f"frames per clip (default {SYNTH.frames})")
    p.add_argument("--size", type=parse_size, default=(SYNTH.height, SYNTH.width),
                   help=f"HEIGHTxWIDTH, even (default {SYNTH.height}x{SYNTH.width})")
    p.add_argument("--shard-size", type=positive_int, default=SYNTH.shard_size,
                   help=f"pairs per tar shard (default {SYNTH.shard_size})")
    p.add_argument(
        "--motion", type=float, default=SYNTH.motion,
        help="scale every camera and object motion (0 = still scenes: the first stage of the bundled "
        f"model's curriculum; default {SYNTH.motion:g})",
    )
    p.add_argument(
        "--leaves", type=share, default=SYNTH.leaves,
        help="share (0–1) of worlds and objects drawn as dead leaves, sharp-edged photograph-like textures "
        f"(the bundled model's stage 6; default {SYNTH.leaves:g})",
    )
    p.add_argument(
        "--camouflage", type=share, default=SYNTH.camouflage,
        help="share (0–1) of objects drawn like their world (same texture kind, nearly its colour), as a "
        f"cut-out of a photograph over a photograph is (the bundled model's stage 8; default {SYNTH.camouflage:g})",
    )
    p.add_argument(
        "--photos", type=share, default=SYNTH.photos,
        help="share (0–1) of train-split worlds, objects and edits cut from the training photographs "
        "(mahotas' and PyWavelets', never the real split's; the bundled model's stage 10; "
        f"default {SYNTH.photos:g})",
    )
    p.add_argument(
        "--photo-pool", choices=PHOTO_POOLS, default=SYNTH.photo_pool,
        help="which training photographs --photos draws from: base (mahotas' and PyWavelets') or wide "
        f"(also Gradio's four colour photos; needs gradio>=6); default {SYNTH.photo_pool}",
    )
    p.set_defaults(func=cmd_data_synth)


def cmd_data_synth(args: argparse.Namespace) -> None:
    from freeprop.data.synthetic import write_synthetic

    if args.motion < 0:
        raise FreePropInputError(f"--motion {args.motion:g}: must be ≥ 0 (0 = still scenes, 1 = as generated)")
    height, width = args.size
    if height % 2 or width % 2:
        raise FreePropInputError(f"--size {height}x{width}: height and width must be even (video encoders need it)")
    splits = (("train", args.train), ("val", args.val), ("test", args.test), ("real", args.real))
    counts = {k: v for k, v in splits if v}
    if not counts:
        raise FreePropInputError("nothing to write: every split count is 0")
    output_folder(args.output)
    written = write_synthetic(
        args.output, counts, args.frames, height, width, shard_size=args.shard_size, motion=args.motion,
        leaves=args.leaves, camouflage=args.camouflage, photos=args.photos, photo_pool=args.photo_pool,
    )
    print(f"wrote {sum(written.values())} pairs to {args.output} ({', '.join(f'{k} {v}' for k, v in written.items())})")


# ----------------------------------------------------------------------------------------------
# build (paper §3)
# ----------------------------------------------------------------------------------------------


def _add_build(sub) -> None:
    p = sub.add_parser(
        "build",
        help="build FFP-300K-style pairs: local (swap/removal) and global (stylization) tracks",
        description="Runs the paper's two-track construction pipeline (§3) from a YAML config (see "
        "configs/data/ffp300k.yaml): Qwen2.5-VL analysis and captions, Grounding DINO + SAM2 masks, VACE "
        "synthesis, Wan I2V and depth for stylization, VLM quality control, dedup, and the pair writer. "
        "Resumable: with --resume, committed samples are skipped; per-sample failures are recorded.",
    )
    p.add_argument("config", help="build config YAML")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. models.device=cuda local.frames=33")
    p.add_argument("--executor", choices=("local", "ray"), help="override execution.executor")
    p.add_argument("--limit", type=positive_int, help="build at most N new samples")
    p.add_argument("--resume", action="store_true",
                   help="continue a dataset that already has an index (transient failures are tried again)")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: run every failed sample again, not only the transient failures")
    p.set_defaults(func=cmd_data_build)


def cmd_data_build(args: argparse.Namespace) -> int:
    from freeprop.data.build import load_build_config, run_build
    from freeprop.data.executors import WorkerCrashed

    cfg = load_build_config(args.config, args.overrides)
    if args.executor:
        from dataclasses import replace

        cfg = replace(cfg, execution=replace(cfg.execution, executor=args.executor))
    if args.retry_failed and not args.resume:
        raise FreePropInputError("--retry-failed continues a dataset: add --resume")
    try:
        summary = run_build(cfg, limit=args.limit, resume=args.resume, retry_failed=args.retry_failed)
    except WorkerCrashed as err:
        print(f"freeprop: build stopped: {err}", file=sys.stderr)
        return 1
    print(summary.table())
    print(f"wrote {cfg.output} (index.parquet, shards, build_summary.json)")
    return 0


# ----------------------------------------------------------------------------------------------
# review and the VACE fine-tune (paper §3.3)
# ----------------------------------------------------------------------------------------------


def _add_review(sub) -> None:
    p = sub.add_parser(
        "review",
        help="HTML page to accept / reject candidate pairs (the removal curation of §3.3)",
        description="Writes OUTPUT/index.html with every pair of TASK side by side (source | edit). With --serve "
        "it is served on 127.0.0.1 and the Save button writes OUTPUT/decisions.json; without, Save downloads it.",
    )
    p.add_argument("dataset", help="pair-format folder")
    p.add_argument("-o", "--output", required=True, help="review folder")
    p.add_argument("--task", default="removal", help="which task to review (default removal)")
    p.add_argument("--limit", type=positive_int, help="at most N pairs")
    p.add_argument("--per-page", type=positive_int, default=48, help="pairs shown per page (default 48)")
    p.add_argument("--serve", type=_port, nargs="?", const=8765, help="serve on 127.0.0.1:PORT (default 8765)")
    p.set_defaults(func=cmd_data_review)


def _port(text: str) -> int:
    port = non_negative_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def cmd_data_review(args: argparse.Namespace) -> None:
    from freeprop.data.curation import make_review_server, write_review

    output_folder(args.output)
    page = write_review(args.dataset, args.output, args.task, args.limit, args.per_page)
    print(f"wrote {page}")
    if args.serve is not None:
        server = make_review_server(args.output, args.serve)
        host, port = server.server_address[:2]
        print(
            f"review at http://{host}:{port}/index.html — decisions are saved to {args.output}/decisions.json; Ctrl-C to stop"
        )
        try:
            server.serve_forever()
        finally:
            server.server_close()


def _add_finetune_vace(sub) -> None:
    p = sub.add_parser(
        "finetune-vace",
        help="LoRA-fine-tune VACE on the accepted removals (§3.3), to regenerate the removal subset",
        description="Streams one accepted pair per step from the shards (memory does not grow with the "
        "number of pairs), checkpoints the transformer's activations, and saves the LoRA, optimizer and "
        "random state every --save-every steps under OUTPUT/checkpoints; --resume continues a killed run.",
    )
    p.add_argument("dataset", help="pair-format folder holding the reviewed removals")
    p.add_argument("--decisions", required=True, help="decisions.json from `freeprop data review`")
    p.add_argument("-o", "--output", required=True, help="LoRA folder to write")
    p.add_argument("--vace", default="Wan-AI/Wan2.1-VACE-14B-diffusers", help="VACE diffusers folder or id")
    p.add_argument("--steps", type=positive_int, default=1000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--rank", type=positive_int, default=64)
    p.add_argument("--save-every", type=positive_int, default=100, help="checkpoint every N steps (default 100)")
    p.add_argument("--resume", action="store_true", help="continue from the output's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in an output folder that holds a run (deletes it)")
    add_device_options(p)
    p.set_defaults(func=cmd_data_finetune_vace)


def cmd_data_finetune_vace(args: argparse.Namespace) -> int:
    from freeprop.data.curation import read_decisions
    from freeprop.data.pairs import PairDataset
    from freeprop.data.stages.synthesis import load_vace
    from freeprop.data.vace_finetune import accepted_removals, finetune_vace

    decisions = read_decisions(args.decisions)
    accepted_removals(PairDataset(args.dataset, tasks=("removal",)), decisions)  # before loading VACE
    device, dtype = device_and_dtype(args.device, args.dtype)
    pipe = load_vace(args.vace, device, dtype)
    summary = finetune_vace(pipe, args.dataset, decisions, args.output, args.steps, args.lr, args.rank,
                            save_every=args.save_every, resume=args.resume, overwrite=args.overwrite)  # fmt: skip
    if summary["status"] == "interrupted":
        print(f"interrupted at step {summary['steps']}; continue with the same command and --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    lora = Path(args.output) / "adapter"
    print(f"wrote {lora} (LoRA; {summary['accepted']} accepted removals, {summary['steps']} steps, "
          f"recent loss {summary.get('recent_mean', {}).get('loss', float('nan')):.3f})")  # fmt: skip
    print(f"regenerate the removals: freeprop data build CONFIG models.vace_lora={lora} 'local.tasks=[removal]' output=NEW")
    return 0


# ----------------------------------------------------------------------------------------------
# inspect
# ----------------------------------------------------------------------------------------------


def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="statistics of a pair dataset and a contact sheet of pairs")
    p.add_argument("dataset", help="pair-format folder (index.parquet + shards)")
    p.add_argument("--contact-sheet", help="write a PNG of sample pairs here")
    p.add_argument("--count", type=positive_int, default=12, help="pairs on the contact sheet (default 12)")
    p.set_defaults(func=cmd_data_inspect)


def cmd_data_inspect(args: argparse.Namespace) -> None:
    from freeprop.data.inspect import inspect

    stats = inspect(args.dataset, args.contact_sheet, args.count)
    print(json.dumps(stats, indent=1))
    if args.contact_sheet and stats["status"].get("ok"):
        print(f"wrote {args.contact_sheet} (source frame 0 | edited frame 0 | edited middle | mask)")


# ----------------------------------------------------------------------------------------------
# repair
# ----------------------------------------------------------------------------------------------


def _add_repair(sub) -> None:
    p = sub.add_parser(
        "repair",
        help="rebuild index.parquet from the shards (lost or corrupt index, damaged shards)",
        description="Every sample whose video members are complete and match their checksum gets back the "
        "index row its shard carries (in <id>.meta.json); damaged members are reported per sample and the "
        "shard's other samples kept; failure rows of a readable old index are kept. The old index is saved "
        "as index.parquet.bak. --check reports without changing anything (exit 1 if anything is wrong).",
    )
    p.add_argument("dataset", help="pair-format folder (shard-*.tar [+ index.parquet])")
    p.add_argument("--check", action="store_true", help="report only; write nothing")
    p.set_defaults(func=cmd_data_repair)


def cmd_data_repair(args: argparse.Namespace) -> int:
    from pathlib import Path

    from freeprop.data.pairs import repair_index

    root = Path(args.dataset)
    if not root.is_dir() or not any(root.glob("shard-*.tar")):
        raise FreePropInputError(f"{root}: no shard-*.tar here; pass a pair-format folder")
    report = repair_index(root, write=not args.check)
    for line in report["shards"]:
        print(f"damaged shard: {line}")
    for line in report["bad"]:
        print(f"bad sample: {line}")
    for sid in report["lost"]:
        print(f"lost: {sid} (ok in the old index, no complete copy in the shards)")
    verb = "would keep" if args.check else "kept"
    print(f"{verb} {report['kept']} samples and {report['failures_kept']} failure rows; {len(report['bad'])} bad, "
          f"{len(report['lost'])} lost; old index {report['old_index']}"
          + ("" if args.check else f"; wrote {root / 'index.parquet'} (old one: index.parquet.bak)"))  # fmt: skip
    problems = report["shards"] or report["bad"] or report["lost"]
    return 1 if args.check and problems else 0
