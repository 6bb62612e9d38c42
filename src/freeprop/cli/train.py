"""`freeprop train`: fine-tune on pair-format data (LoRA + AST-RoPE + self-distillation), resumable."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from freeprop.config import packaged_configs

EXIT_INTERRUPTED = 130  # as a shell reports a run stopped by Ctrl-C


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a FreeProp model on pair-format data",
        description="Flow matching + LoRA (+ AST-RoPE, + identity-propagation self-distillation, paper §4.3) on "
        "accelerate. Multi-GPU: accelerate launch -m freeprop.cli train CONFIG.yaml. Checkpoints are saved "
        "every save_every steps and on SIGTERM/SIGINT; --resume continues exactly.",
    )
    names = ", ".join(n for n in packaged_configs() if "/" not in n)
    p.add_argument("config", help=f"YAML recipe: a file, or a shipped recipe by name ({names})")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr=1e-4 loss.variant=baseline")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.add_argument("--overwrite", action="store_true", help="start over in an output_dir that holds a run (deletes it)")
    p.add_argument("--print-config", action="store_true",
                   help="print the recipe as it will run (bases and overrides applied) and exit")
    p.set_defaults(func=cmd_train)


def resume_command(args: argparse.Namespace) -> str:
    """The command that continues this run: the user's config and overrides, plus --resume."""
    return shlex.join(["freeprop", "train", args.config, *args.overrides, "--resume"])


def cmd_train(args: argparse.Namespace) -> int:
    from freeprop.training.config import load_config, to_dict

    cfg = load_config(args.config, args.overrides)
    if args.print_config:  # before the training stack is imported: instant
        import yaml

        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    from freeprop.training.recipe import TrainingError, train

    try:
        summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    except TrainingError as err:
        print(f"freeprop: training stopped: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    if summary.get("status") == "interrupted":
        print(f"interrupted at step {summary['steps']}; continue with: {resume_command(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
