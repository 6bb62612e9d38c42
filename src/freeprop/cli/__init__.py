"""The `freeprop` command line: one module per command group, each parser next to its handler.

    freeprop demo [-o outputs/demo]           bundled model vs flow-warp on bundled content, with an HTML page
    freeprop frame0 VIDEO                     save frame 0 as a PNG to edit in any image editor
    freeprop edit VIDEO EDITED.png [-o OUT]   carry the edited first frame through the video
    freeprop edit FOLDER|MANIFEST -o OUT      the same for a batch (resumable, one progress bar)
    freeprop app                              the local web app (Gradio, 127.0.0.1)
    freeprop train CONFIG.yaml [key=value]    fine-tune (LoRA + AST-RoPE + self-distillation), resumable
    freeprop data synth|build|review|repair|… datasets in the pair format
    freeprop eval --bench … -o REPORT         the paper's metrics
    freeprop eval select|first-frames         the paper's case subset; edited first frames (Qwen-Image-Edit)
    freeprop presets | heads classify|show    model sizes; the spatial/temporal head map (§8.1)

Nothing heavy is imported until a command runs, so `--help` and typos answer at once. User errors
(bad paths, unreadable videos, bad options) print one line and exit with status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import errno
import sys

from freeprop import __version__
from freeprop.cli import app, data, demo, edit, eval, models, train
from freeprop.errors import run_script

DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # no space, a file-size limit, a quota


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (what is wrong, where to read more), not a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="freeprop",
        description="FreeProp: first-frame propagation video editing (FFP-300K). Edit frame 0 of a video "
        "with any image editor; FreeProp carries the edit through the whole video.",
    )
    parser.add_argument("--version", action="version", version=f"freeprop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    edit.add_frame0_parser(sub)
    edit.add_edit_parser(sub)
    app.add_parser(sub)
    train.add_parser(sub)
    data.add_parser(sub)
    eval.add_parser(sub)
    models.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    def command() -> int | None:
        args = build_parser().parse_args(argv)
        return args.func(args)

    try:
        return run_script(command, "freeprop")
    except KeyboardInterrupt:  # also during the heavy imports a command starts with
        print("freeprop: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        print(f"freeprop: error: the disk is full ({err.strerror}); free some space and run the same command "
              "again (finished work is kept)", file=sys.stderr)
        return 1
