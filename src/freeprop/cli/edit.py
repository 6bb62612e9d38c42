"""`freeprop frame0` and `freeprop edit`: take frame 0 out, then carry its edit through the video.

    freeprop frame0 clip.mp4                        → clip.frame0.png (edit it in any image editor)
    freeprop edit clip.mp4 clip.frame0.png          → clip.edited.mp4
    freeprop edit FOLDER | MANIFEST.csv|.jsonl -o OUT   batch: one output per row, resumable
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from freeprop.cli.common import (
    add_device_options,
    check_output_folder,
    device_and_dtype,
    format_size,
    non_negative_float,
    non_negative_int,
    parse_size,
    positive_int,
    resolve_model,
    share,
)
from freeprop.defaults import BUNDLED_MODEL, DEFAULT_EDIT_METHOD, EDIT_METHODS, SAMPLING, SCHEDULERS
from freeprop.errors import FreePropInputError

MODEL_OPTIONS = ("model", "weights", "lora", "steps", "samples", "identity_correction", "correction_gate", "prompt")  # any of these asks for a model

# Peak memory of an edit ≈ start-up + factor × the bytes of the frames it holds at once (edits stream:
# flow-warp holds one frame and its float buffers, the model one window); measured with
# `python benchmarks/edit_memory.py` (see its results), rounded up.
MEMORY_FACTOR = {"flow-warp": 150.0, "freeprop": 8.0}  # measured 143 (codec buffers included) and 5.9
STARTUP_BYTES = {"flow-warp": 120 * 2**20, "freeprop": 550 * 2**20}


# ----------------------------------------------------------------------------------------------
# frame0
# ----------------------------------------------------------------------------------------------


def add_frame0_parser(sub) -> None:
    p = sub.add_parser(
        "frame0",
        help="save frame 0 of a video as a PNG, ready to edit in any image editor",
        description="Writes the exact first frame the editors see, at the video's own size (and, with --size, "
        "at the size `freeprop edit --size` will produce). Edit it, then: freeprop edit VIDEO EDITED.png",
    )
    p.add_argument("video", help="the source video (or a folder of frames)")
    p.add_argument("-o", "--output", help="PNG to write (default: VIDEO's name + .frame0.png, next to it)")
    p.add_argument("--size", type=parse_size, help="also write it cover-cropped to HEIGHTxWIDTH")
    p.set_defaults(func=cmd_frame0)


def cmd_frame0(args: argparse.Namespace) -> None:
    from freeprop.video import ensure_not_input, read_video, resize_cover_crop, write_image

    source = Path(args.video)
    output = Path(args.output) if args.output else source.with_name(source.stem + ".frame0.png")
    if output.suffix.lower() != ".png":
        raise FreePropInputError(f"{output}: frame0 writes a lossless PNG; name the output *.png")
    ensure_not_input(output, source)
    check_output_folder(output)
    frame = read_video(source, max_frames=1).frames[0]
    write_image(output, frame)
    print(f"wrote {output} (frame 0, {format_size(*frame.shape[:2])}, the video's own size)")
    if args.size:
        sized = output.with_name(f"{output.stem}.{format_size(*args.size)}.png")
        write_image(sized, resize_cover_crop(frame[None], *args.size)[0][0])
        print(f"wrote {sized} (frame 0 as `freeprop edit --size {format_size(*args.size)}` sees it)")
    print(f"next: edit it, then run  freeprop edit {source} {output}")


# ----------------------------------------------------------------------------------------------
# edit: the parser
# ----------------------------------------------------------------------------------------------


def add_edit_parser(sub) -> None:
    p = sub.add_parser(
        "edit",
        help="propagate an edited first frame through a video (or a batch of them)",
        description="Edit frame 0 of SOURCE with any image editor (`freeprop frame0 SOURCE` saves it), save it as "
        "FIRST_FRAME, and the edit is carried through the whole video keeping the source motion (paper §4). "
        "Batch: SOURCE is a folder of videos, each with its edited frame beside it (clip.mp4 + clip.png or "
        "clip.frame0.png), or a CSV/JSONL manifest with columns video, first_frame[, prompt, output]; the model "
        "loads once, finished rows are skipped on rerun, failures are recorded and the batch carries on.",
    )
    p.add_argument("source", help="video (any format FFmpeg reads, or a folder of frames); or a batch")
    p.add_argument("first_frame", nargs="?", help="the edited frame 0 (PNG/JPEG/WebP), same aspect ratio")
    p.add_argument(
        "-o", "--output",
        help="output .mp4/.gif (or a folder name for PNG frames); batch: the output folder "
        "(default: next to SOURCE, named SOURCE.edited.mp4 / SOURCE_edited/)",
    )
    p.add_argument(
        "--method", choices=EDIT_METHODS,
        help="freeprop (a model) or flow-warp (optical-flow propagation, no weights); default: freeprop "
        f"when a model option is given, else {DEFAULT_EDIT_METHOD} (measured best on real footage)",
    )
    p.add_argument("--model", help=f"'{BUNDLED_MODEL}' (default: the shipped trained model), a pipeline/"
                   "transformer folder, or a preset name with --weights")
    p.add_argument("--weights", help="safetensors for a preset: FreeProp weights or a Wan2.1 Fun-Control checkpoint")
    p.add_argument("--random-weights", action="store_true", help="allow a preset with no --weights (untrained)")
    p.add_argument("--vae", help="Wan2.1 VAE folder (for models on VAE latents, when the model folder has none)")
    p.add_argument("--lora", help="adapter folder written by training (or a LoRA .safetensors file)")
    p.add_argument("--fuse-lora", action="store_true", help="merge the LoRA into the weights (faster inference)")
    p.add_argument("--head-map", help="head map JSON (freeprop heads classify); default: the one saved with --lora")
    p.add_argument("--prompt", help="optional text describing the edited video (needs a text encoder)")
    p.add_argument("--negative-prompt", help="text to steer away from (with --prompt)")
    p.add_argument("--steps", type=positive_int,
                   help=f"denoising steps (default: the model folder's stored value — the bundled model's: 1 — else {SAMPLING.steps})")
    p.add_argument("--samples", type=positive_int,
                   help="samples averaged per window: steadier, at that many times the cost (default: the model folder's "
                   "stored value — the bundled model's: 1 — else 1)")
    p.add_argument("--identity-correction", type=share, metavar="C",
                   help="0–1: take off C × what the model changes when the first frame is not edited (its own "
                   "error), at twice the cost (default: the model's own, else 0)")
    p.add_argument("--correction-gate", type=non_negative_float, metavar="TAU",
                   help="grey levels: the identity correction fades out where the edit moved the output by up to "
                   "TAU (0: everywhere; default: the model's own — the bundled model's: 16 — else 0)")
    p.add_argument("--guidance", type=float, default=SAMPLING.guidance_scale,
                   help=f"classifier-free guidance scale, with --prompt (default {SAMPLING.guidance_scale:g})")
    p.add_argument("--seed", type=int, default=SAMPLING.seed)
    p.add_argument("--frames", type=positive_int, help="edit only the first N frames (default: all)")
    p.add_argument("--size", type=parse_size, help="output HEIGHTxWIDTH (default: the source's)")
    p.add_argument("--window", type=positive_int, help="frames per window for long videos (default 81 with the Wan VAE)")
    p.add_argument("--overlap", type=non_negative_int, default=SAMPLING.overlap,
                   help=f"frames shared by consecutive windows, cross-faded (default {SAMPLING.overlap})")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=SAMPLING.scheduler, help="flow-matching sampler")
    p.add_argument("--shift", type=float, help=f"flow shift (default: by resolution, as Wan2.1: {SAMPLING.shift:g} at "
                   f"480p, {SAMPLING.shift_720p:g} at 720p)")
    add_device_options(p)
    p.add_argument("--attention-backend", help="diffusers attention backend, e.g. flash, _native_cudnn, sage")
    p.add_argument("--side-by-side", help="also write source | edited first frame | output to this video path")
    p.add_argument("--overwrite", action="store_true", help="batch: redo rows whose output already exists")
    p.set_defaults(func=cmd_edit)


def default_method(args) -> str:
    """A model option (--model, --weights, --lora, --steps, --samples, --identity-correction, --correction-gate,
    --prompt) asks for a model; else the default."""
    wants_model = any(getattr(args, k) is not None for k in MODEL_OPTIONS)
    return "freeprop" if wants_model else DEFAULT_EDIT_METHOD


def cmd_edit(args: argparse.Namespace) -> int:
    from freeprop.cli.batch import is_batch, run_batch

    if args.first_frame is None:
        if not is_batch(args.source):
            raise FreePropInputError(
                f"{args.source}: give the edited first frame too (save frame 0 with: freeprop frame0 {args.source})"
            )
        return run_batch(args, Editor(args))
    source = Path(args.source)
    output = Path(args.output) if args.output else source.with_name(source.stem + ".edited.mp4")
    Editor(args).edit_one(source, Path(args.first_frame), output, args.prompt, side_by_side=args.side_by_side)
    return 0


# ----------------------------------------------------------------------------------------------
# edit: the work, shared by one edit and a batch (the model loads once)
# ----------------------------------------------------------------------------------------------


class Editor:
    """Edits clips with the method the options name; a model is loaded on first use and kept."""

    def __init__(self, args: argparse.Namespace, quiet: bool = False, pipe=None, progress=None):
        """`pipe`: an already loaded pipeline to reuse; `progress(step, total)`: called while denoising."""
        self.args, self.quiet, self.progress = args, quiet, progress
        self.method = args.method or default_method(args)
        self.size = args.size or (None, None)
        self._pipe = pipe
        if self.method == "freeprop":  # fail on a bad model name or device before reading any video
            self.model = resolve_model(args.model, args.weights, args.random_weights)
        if self.method == "freeprop" or args.device:  # flow-warp needs torch only to check --device
            self.device, self.dtype = device_and_dtype(args.device, args.dtype)

    def edit_one(self, source: Path, first_frame: Path, output: Path, prompt=None, side_by_side=None):
        """1. check inputs, 2. propagate frame by frame, 3. write each frame as it comes (atomically:
        the outputs appear under their names only when complete). Memory holds one window, not the video."""
        from freeprop.video import ensure_not_input, open_video, probe_video, read_image

        ensure_not_input(output, source, first_frame)
        check_output_folder(output, side_by_side)
        first = read_image(first_frame)
        known, _, _ = probe_video(source)
        wanted = self.args.frames
        if wanted and known and wanted > known:
            raise FreePropInputError(f"--frames {wanted}: {source} has only {known} frames")
        video = open_video(source, max_frames=wanted)
        (src_h, src_w), (edit_h, edit_w) = (video.height, video.width), first.shape[:2]
        if abs((edit_w / edit_h) / (src_w / src_h) - 1) > 0.01:
            video.frames.close()
            raise FreePropInputError(
                f"{first_frame}: {format_size(edit_h, edit_w)} does not match the video's aspect ratio "
                f"({format_size(src_h, src_w)}, HEIGHTxWIDTH); export the edited frame at the video's size"
            )
        self.check_memory(source, video.height, video.width)
        alphas = []
        count = self.write(source, output, video, first, alphas, prompt, min(filter(None, (wanted, known)), default=None),
                           side_by_side)  # fmt: skip
        if not self.quiet:
            shown = ", ".join(f"{a:.3f}/{b:.3f}" for a, b in alphas) or "–"
            size = format_size(*(self.size if self.size[0] else (src_h, src_w)))
            print(f"wrote {output} ({count} frames, {size}, {video.fps:g} fps; method {self.method}; "
                  f"α_S/α_T per window: {shown})")
            if side_by_side:
                print(f"wrote {side_by_side} (source | edited first frame | output)")
        return output

    def check_memory(self, source: Path, height: int, width: int) -> None:
        """Refuse up front, naming the memory it would take, an edit that cannot fit (the OOM killer's
        alternative is a dead process and no message). Edits stream, so what counts is the frames one
        window holds (flow-warp: a few), not the video's length."""
        from freeprop.video import available_memory

        out_h, out_w = self.size if self.size[0] else (height, width)
        held = 1 if self.method == "flow-warp" else (self.args.window or self.model_window()) + 1  # frames
        needed = STARTUP_BYTES[self.method] + MEMORY_FACTOR[self.method] * held * 3 * max(height * width, out_h * out_w)
        available = available_memory()
        if available is not None and needed > available:
            raise FreePropInputError(
                f"{source}: editing at {format_size(height, width)} needs about {needed / 2**30:.1f} GiB of memory, "
                f"{available / 2**30:.1f} GiB are free; choose a smaller --size (or --window)"
            )

    def model_window(self) -> int:
        """The model's window in frames, from its folder's model_index.json when it says (no loading);
        else the Wan VAE's 81."""
        import json

        index = Path(str(self.model)) / "model_index.json"
        try:
            return int(json.loads(index.read_text()).get("window_frames") or 81)
        except (OSError, ValueError, TypeError, AttributeError):
            return 81

    def propagate(self, frames, first, prompt=None, alphas=None, num_frames=None):
        """Output frames, one at a time, from an iterator of source frames (frame 0 first)."""
        from freeprop.video import resize_cover_crop

        height, width = self.size
        if self.method == "flow-warp":
            from freeprop.baselines.flow_warp import propagate_frames

            frames = iter(frames)
            frame0 = next(frames)
            edit = resize_cover_crop(first, *frame0.shape[:2])[0]
            for out in propagate_frames(itertools.chain([frame0], frames), edit):
                yield resize_cover_crop(out, height, width)[0] if height else out
            return
        import torch

        a = self.args
        yield from self.pipeline().stream(
            frames, first, num_frames, prompt=prompt, negative_prompt=a.negative_prompt, height=height, width=width,
            num_inference_steps=a.steps, guidance_scale=a.guidance, generator=torch.Generator().manual_seed(a.seed),
            window_frames=a.window, overlap=a.overlap, callback=self.progress, alphas=alphas, num_samples=a.samples,
            identity_correction=a.identity_correction, correction_gate=a.correction_gate,
        )  # fmt: skip

    def pipeline(self):
        if self._pipe is None:
            from freeprop.models.heads import read_head_map
            from freeprop.pipeline import load_pipeline

            a = self.args
            pipe = load_pipeline(self.model, a.weights, a.vae, a.scheduler, a.shift, self.dtype)
            head_map = read_head_map(a.head_map) if a.head_map else None
            if a.lora:
                pipe.load_adapter(a.lora, fuse=a.fuse_lora, head_map=head_map)
            elif head_map is not None:
                pipe.transformer.set_head_map(head_map)
            pipe.to(self.device)
            if a.attention_backend:
                pipe.transformer.set_attention_backend(a.attention_backend)
            if self.quiet:
                pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe
        return self._pipe

    def write(self, source, output, video, first, alphas, prompt=None, num_frames=None, side_by_side=None) -> int:
        """Propagate `video` (a `VideoStream`) and write the result, and the side-by-side comparison, as
        the frames come; returns the frame count. `--frames` beyond the video's end is an error and
        leaves nothing written."""
        import contextlib

        import numpy as np

        from freeprop.video import VideoWriter, resize_cover_crop

        sources, for_side = itertools.tee(video.frames) if side_by_side else (video.frames, None)
        with contextlib.ExitStack() as stack:
            writer = stack.enter_context(VideoWriter(output, video.fps))
            side = stack.enter_context(VideoWriter(side_by_side, video.fps)) if side_by_side else None
            edit = None  # the edited frame at the output size, for the side-by-side (made once)
            for frame in self.propagate(sources, first, prompt, alphas, num_frames):
                writer.write(frame)
                if side is not None:
                    size = frame.shape[:2]
                    edit = edit if edit is not None else resize_cover_crop(first, *size)[0]
                    side.write(np.concatenate([resize_cover_crop(next(for_side), *size)[0], edit, frame], axis=1))
            if self.args.frames and writer.count < self.args.frames:
                raise FreePropInputError(f"--frames {self.args.frames}: {source} has only {writer.count} frames")
        return writer.count
