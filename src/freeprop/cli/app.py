"""`freeprop app`: serve the local web app (freeprop/app.py) on 127.0.0.1 unless --host says otherwise."""

from __future__ import annotations

import argparse

from freeprop.cli.common import non_negative_int


def add_parser(sub) -> None:
    p = sub.add_parser(
        "app",
        help="the local web app: upload, edit frame 0, propagate, watch and download",
        description="A Gradio page for the whole workflow. It listens on 127.0.0.1 (this machine only) unless "
        "--host is given; jobs are queued, so a long one does not freeze the page.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    p.add_argument("--port", type=non_negative_int, default=7860, help="port (default 7860; 0 = any free one)")
    p.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> None:
    from freeprop.errors import FreePropInputError

    if args.port > 65535:
        raise FreePropInputError(f"--port {args.port}: a port is 0..65535")
    try:
        from freeprop.app import launch
    except ImportError as err:
        raise FreePropInputError(f"the web app needs Gradio ({err}); pip install gradio") from None
    page, (_, url, _) = launch(args.host, args.port or None, show_error=True, quiet=True, prevent_thread_lock=True)
    print(f"FreeProp app on {url} — open it in a browser; Ctrl-C to stop")
    try:
        page.block_thread()
    finally:
        page.close()
