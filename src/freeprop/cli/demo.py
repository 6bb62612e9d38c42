"""`freeprop demo`: the bundled model beside the flow-warp baseline on bundled content, as a web page."""

from __future__ import annotations

import argparse

from freeprop.cli.common import positive_int, resolve_model
from freeprop.defaults import BUNDLED_MODEL


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the bundled model and the flow-warp baseline on bundled samples")
    p.add_argument("-o", "--output", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--model", help=f"model to demo (default: {BUNDLED_MODEL}, the shipped trained model)")
    p.add_argument("--random-weights", action="store_true", help="allow a preset with random weights")
    p.add_argument("--steps", type=positive_int, help="denoising steps (default: the model's own, as `edit`)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> None:
    from freeprop.demo import run_demo

    model = resolve_model(args.model, random_weights=args.random_weights)
    print(f"demo with model {args.model or BUNDLED_MODEL} → {args.output}")
    report = run_demo(args.output, model, steps=args.steps, progress=True)
    for task, result in report.items():
        print(
            f"  {task:<12} PSNR  FreeProp {result['freeprop']['psnr']:.2f} dB   flow-warp "
            f"{result['flow_warp']['psnr']:.2f} dB   copy-source {result['copy_source']['psnr']:.2f} dB"
        )
    print(f"wrote {args.output}/index.html (open it in a browser)")
