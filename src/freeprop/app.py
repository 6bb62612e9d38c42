"""`freeprop app`: the local web app (Gradio), the whole FFP workflow in a browser.

    upload a video → frame 0 (shown, downloadable) → edit it in the page's image editor, or upload
    the edited frame there → method / model / steps / size → run (progress bar, queued) → source |
    edited frame | result side by side, and the result mp4 to download.

The work is `freeprop edit`'s (`cli.edit.Editor`), so the app and the command give the same pixels.
A user's mistake (a file that is no video, an edit of another aspect ratio) is one line in the page;
anything else is one line too, with the traceback left in the server's console.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np

from freeprop.cli.common import format_size, parse_size
from freeprop.cli.edit import Editor, add_edit_parser
from freeprop.defaults import BUNDLED_MODEL, DEFAULT_EDIT_METHOD, EDIT_METHODS
from freeprop.errors import FreePropInputError
from freeprop.video import read_video, write_image

log = logging.getLogger("freeprop.app")
MAX_STEPS = 100


def _edit_args(**options) -> argparse.Namespace:
    """`freeprop edit`'s options with their defaults (one source of truth), then the page's choices."""
    sub = argparse.ArgumentParser().add_subparsers()
    add_edit_parser(sub)
    args = sub.choices["edit"].parse_args(["source.mp4", "first.png"])
    return argparse.Namespace(**(vars(args) | options))


class App:
    """The page's two actions; models are loaded once per name and kept for the next run."""

    def __init__(self, workdir: str | Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="freeprop-app-"))
        self._pipes: dict[str, object] = {}

    def _folder(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.workdir))

    def frame0(self, video_path: str | None):
        """Upload → (editor background, PNG to download, note)."""
        if not video_path:
            return None, None, "Upload a video to start."
        frame = read_video(video_path, max_frames=1).frames[0]
        png = write_image(self._folder() / f"{Path(video_path).stem}.frame0.png", frame)
        editor = {"background": frame, "layers": [], "composite": frame}
        note = (f"Frame 0: {format_size(*frame.shape[:2])} (HEIGHTxWIDTH). Edit it below (brush, or upload "
                "your edited version of it), then press Propagate.")
        return editor, str(png), note

    def propagate(self, video_path, edited, method, model, steps, size, progress=None):
        """Run the edit → (side-by-side mp4, result mp4, note)."""
        # 1. What the page holds, checked before anything heavy.
        if not video_path:
            raise FreePropInputError("upload a source video first")
        first = _composite(edited)
        if first is None:
            raise FreePropInputError("no edited first frame: edit frame 0 in the editor, or upload one there")
        try:
            size = parse_size(size) if size and size.strip() else None
        except argparse.ArgumentTypeError as err:
            raise FreePropInputError(str(err)) from None
        model = (model or BUNDLED_MODEL).strip()
        steps = int(steps) if steps else None
        if steps is not None and not 1 <= steps <= MAX_STEPS:
            raise FreePropInputError(f"steps must be 1..{MAX_STEPS} (0: the model's own)")

        # 2. The edit, with `freeprop edit`'s code; the model stays loaded between runs.
        folder = self._folder()
        first_path = write_image(folder / "edited_first_frame.png", first)
        options = {"method": method, "size": size, "steps": steps}
        if method == "freeprop":
            options["model"] = model
        editor = Editor(_edit_args(**options), quiet=True, pipe=self._pipes.get(model), progress=progress)
        output, comparison = folder / "result.mp4", folder / "comparison.mp4"
        editor.edit_one(Path(video_path), first_path, output, side_by_side=comparison)
        if method == "freeprop":
            self._pipes[model] = editor.pipeline()
        frames = read_video(output).frames
        note = f"Done: {len(frames)} frames at {format_size(*frames.shape[1:3])} with {editor.method}."
        return str(comparison), str(output), note


def _composite(edited) -> np.ndarray | None:
    """The ImageEditor's value (or a plain image) → uint8 RGB, alpha laid over white."""
    image = edited.get("composite") if isinstance(edited, dict) else edited
    if image is None:
        return None
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.shape[-1] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255
        image = (image[..., :3] * alpha + 255 * (1 - alpha)).round()
    return image[..., :3].astype(np.uint8)


@contextmanager
def _one_line(action: str):
    """Every error becomes one line in the page (gr.Error); never a stack trace."""
    try:
        yield
    except FreePropInputError as err:
        raise gr.Error(str(err), print_exception=False) from None
    except Exception as err:  # a bug: the console keeps the traceback, the page gets one line
        log.exception("freeprop app: %s failed", action)
        raise gr.Error(f"internal error ({type(err).__name__}: {err}); see the console", print_exception=False) from None


def _handlers(app: App):
    def frame0(video_path):
        with _one_line("frame0"):
            return app.frame0(video_path)

    def propagate(*inputs, progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker here)
        with _one_line("propagate"):
            return app.propagate(*inputs, progress=lambda done, total: progress(done / total, desc="denoising"))

    return frame0, propagate


def launch(host: str = "127.0.0.1", port: int | None = None, **options):
    """Build and serve the page; results are served from the app's own work folder only."""
    app = App()
    page = build_app(app)
    return page, page.launch(server_name=host, server_port=port, allowed_paths=[str(app.workdir)], **options)


def build_app(app: App | None = None) -> gr.Blocks:
    app = app or App()
    with gr.Blocks(title="FreeProp") as page:
        gr.Markdown("# FreeProp\nEdit the first frame of a video; FreeProp carries the edit through the "
                    "whole video, keeping the source motion.")
        with gr.Row():
            source = gr.Video(label="1. Source video", sources=["upload"], format=None, elem_id="source")
            frame0_file = gr.File(label="Frame 0 (PNG, to edit in any image editor)", interactive=False)
        note = gr.Markdown("Upload a video to start.", elem_id="note")
        edited = gr.ImageEditor(label="2. Edited frame 0 (draw here, or upload your edited frame)",
                                type="numpy", sources=["upload"], format="png", elem_id="edited")
        with gr.Row():
            method = gr.Dropdown(list(EDIT_METHODS), value=DEFAULT_EDIT_METHOD, label="Method")
            model = gr.Textbox(BUNDLED_MODEL, label="Model (freeprop): 'bundled' or a model folder")
            steps = gr.Number(0, label="Steps (0: the model's own)", precision=0, minimum=0, maximum=MAX_STEPS)
            size = gr.Textbox("", label="Output size HEIGHTxWIDTH (empty: the source's)")
        run = gr.Button("3. Propagate", variant="primary", elem_id="propagate")
        with gr.Row():
            comparison = gr.Video(label="source | edited frame 0 | result", format=None,
                                  interactive=False, elem_id="comparison")
            result = gr.File(label="Result (mp4)", interactive=False, elem_id="result")
        on_frame0, on_propagate = _handlers(app)
        source.change(on_frame0, [source], [edited, frame0_file, note], api_name="frame0")
        run.click(on_propagate, [source, edited, method, model, steps, size],
                  [comparison, result, note], api_name="propagate")
    page.queue(default_concurrency_limit=1)  # long jobs wait their turn; the page stays live
    return page
