"""The `freeprop` command line.

    freeprop demo [-o outputs/demo]          bundled model vs flow-warp on bundled content, with an HTML page
    freeprop edit SOURCE FIRST_FRAME -o OUT  propagate an edited first frame through a video
    freeprop train CONFIG.yaml [key=value]   fine-tune (LoRA + AST-RoPE + self-distillation), resumable
    freeprop data synth OUT [--train N]      procedural FFP pairs with exact ground truth (pair format)
    freeprop presets                         list the model presets and their sizes
    freeprop heads classify [VIDEOS ...]     spatial/temporal head map (paper §8.1) → JSON
    freeprop heads show HEADS.json           per-layer summary of a head map

User errors (bad paths, unreadable videos, bad options) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from freeprop.errors import FreePropInputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".gif", ".m4v"}


def _parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size must look like HEIGHTxWIDTH (e.g. 480x832), got {text!r}"
        ) from None
    return height, width


def sample_clips() -> list[Path]:
    """The procedural clips bundled with the package (used when no videos are given)."""
    folder = resources.files("freeprop") / "assets"
    return sorted(
        Path(str(p)) for p in folder.iterdir() if p.name.startswith("sample_") and p.name.endswith(".mp4")
    )


def _collect_videos(paths: list[str]) -> list[Path]:
    videos: list[Path] = []
    for spec in paths:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise FreePropInputError(
                    f"{path}: no video files in this folder; pass videos or a folder of them"
                )
            videos.extend(found)
        elif path.exists():
            videos.append(path)
        else:
            raise FreePropInputError(f"{path}: no such file or folder; check the path")
    return videos


def codec_for(channels: int, vae: str | None = None):
    """The codec for `channels`-channel latents: the Wan VAE at `vae`, or PixelCodec(s) for 3·s² channels."""
    from freeprop.codecs import WanVAECodec, pixel_codec_for

    if vae:
        codec = WanVAECodec.from_pretrained(vae)
        if codec.latent_channels != channels:
            raise FreePropInputError(
                f"{vae}: VAE has {codec.latent_channels} latent channels, model needs {channels}"
            )
        return codec
    return pixel_codec_for(channels, "pass --vae PATH (a Wan2.1 VAE folder)")


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _add_device_options(p: argparse.ArgumentParser) -> None:
    """--device / --dtype, read by `_device_and_dtype`."""
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--dtype", choices=list(DTYPES), help="weights dtype (default: bf16 on cuda, fp32 on cpu)")


def _device_and_dtype(device: str | None, dtype: str | None):
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FreePropInputError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise FreePropInputError("--device mps asked for, but MPS is not available; use --device cpu")
    dtype = dtype or ("bf16" if device.startswith("cuda") else "fp32")
    return torch.device(device), getattr(torch, DTYPES[dtype])


def cmd_edit(args: argparse.Namespace) -> None:
    import numpy as np

    from freeprop.video import ensure_not_input, read_image, read_video, resize_cover_crop, write_video

    # 1. Check every input before loading a model.
    output = Path(args.output)
    ensure_not_input(output, args.source, args.first_frame)
    for path in (output, args.side_by_side):
        if path is not None and not Path(path).parent.resolve().is_dir():
            raise FreePropInputError(
                f"{path}: output folder {Path(path).parent} does not exist; create it first"
            )
    video = read_video(args.source, max_frames=args.frames)
    first = read_image(args.first_frame)
    (src_h, src_w), (edit_h, edit_w) = video.frames.shape[1:3], first.shape[:2]
    if abs((edit_w / edit_h) / (src_w / src_h) - 1) > 0.01:
        raise FreePropInputError(
            f"{args.first_frame}: {edit_w}x{edit_h} does not match the video's aspect ratio ({src_w}x{src_h}); "
            "export the edited frame at the video's size"
        )
    if args.frames and args.frames > len(video.frames):
        raise FreePropInputError(f"--frames {args.frames}: {args.source} has only {len(video.frames)} frames")
    device, dtype = _device_and_dtype(args.device, args.dtype)
    height, width = args.size if args.size != (None, None) else (None, None)

    # 2. The edit: a FreeProp model, or the classical flow-warp baseline (no weights).
    method = args.method or _default_method(args)
    if method == "flow-warp":
        from freeprop.baselines.flow_warp import propagate

        frames = propagate(video.frames, resize_cover_crop(first, src_h, src_w)[0])
        alphas = []
        if height:
            frames = resize_cover_crop(frames, height, width)[0]
    else:
        result = _edit_with_model(args, video.frames, first, height, width, device, dtype)
        frames, alphas = result.frames, result.alphas

    # 3. Write (atomically) what a person looks at.
    write_video(output, frames, fps=video.fps)
    shown = ", ".join(f"{a:.3f}/{b:.3f}" for a, b in alphas) or "–"
    print(
        f"wrote {output} ({len(frames)} frames, {frames.shape[2]}x{frames.shape[1]}, {video.fps:g} fps; "
        f"method {method}; α_S/α_T per window: {shown})"
    )
    if args.side_by_side:
        out_h, out_w = frames.shape[1:3]
        source = resize_cover_crop(video.frames[: len(frames)], out_h, out_w)[0]
        edit = np.repeat(resize_cover_crop(first, out_h, out_w)[0][None], len(frames), axis=0)
        write_video(args.side_by_side, np.concatenate([source, edit, frames], axis=2), fps=video.fps)
        print(f"wrote {args.side_by_side} (source | edited first frame | output)")


# What `freeprop edit` does when neither --method nor a model option is given: the method that measured
# best on the real-footage validation split (README, "The bundled model": mean PSNR over the four tasks).
DEFAULT_EDIT_METHOD = "flow-warp"


def _default_method(args) -> str:
    """A model option (--model, --weights, --lora, --steps, --prompt) asks for a model; else the default."""
    wants_model = any(getattr(args, k) is not None for k in ("model", "weights", "lora", "steps", "prompt"))
    return "freeprop" if wants_model else DEFAULT_EDIT_METHOD


def _edit_with_model(args, frames, first, height, width, device, dtype):
    import torch

    from freeprop.demo import default_model
    from freeprop.pipeline import load_pipeline

    model = args.model or default_model()
    if model in ("tiny", "small") and args.weights is None:
        print(
            f"note: the '{model}' preset has random weights; pass --model/--weights for real edits",
            file=sys.stderr,
        )
    pipe = load_pipeline(model, args.weights, args.vae, args.scheduler, args.shift, dtype)
    head_map = None
    if args.head_map:
        from freeprop.models.heads import read_head_map

        head_map = read_head_map(args.head_map)
    if args.lora:
        pipe.load_adapter(args.lora, fuse=args.fuse_lora, head_map=head_map)
    elif head_map is not None:
        pipe.transformer.set_head_map(head_map)
    pipe.to(device)
    if args.attention_backend:
        pipe.transformer.set_attention_backend(args.attention_backend)
    return pipe(
        frames,
        first,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        num_frames=args.frames,
        height=height,
        width=width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=torch.Generator().manual_seed(args.seed),
        window_frames=args.window,
        overlap=args.overlap,
    )


def cmd_train(args: argparse.Namespace) -> None:
    from freeprop.training.config import load_config
    from freeprop.training.recipe import TrainingError, train

    cfg = load_config(args.config, args.overrides)
    try:
        summary = train(cfg, resume=args.resume)
    except TrainingError as err:
        print(f"freeprop: training stopped: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(summary, indent=1))
    if summary.get("status") == "interrupted":
        print(
            f"interrupted at step {summary['steps']}; continue with: freeprop train {args.config} --resume",
            file=sys.stderr,
        )


def cmd_data_build(args: argparse.Namespace) -> None:
    from freeprop.data.build import load_build_config, run_build

    cfg = load_build_config(args.config, args.overrides)
    if args.executor:
        from dataclasses import replace

        cfg = replace(cfg, execution=replace(cfg.execution, executor=args.executor))
    summary = run_build(cfg, limit=args.limit, resume=args.resume)
    print(summary.table())
    print(f"wrote {cfg.output} (index.parquet, shards, build_summary.json)")


def cmd_data_inspect(args: argparse.Namespace) -> None:
    import json

    from freeprop.data.inspect import inspect

    stats = inspect(args.dataset, args.contact_sheet, args.count)
    print(json.dumps(stats, indent=1))
    if args.contact_sheet and stats["status"].get("ok"):
        print(f"wrote {args.contact_sheet} (source frame 0 | edited frame 0 | edited middle | mask)")


def cmd_data_review(args: argparse.Namespace) -> None:
    from freeprop.data.curation import make_review_server, write_review

    page = write_review(args.dataset, args.output, args.task, args.limit)
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


def cmd_data_finetune_vace(args: argparse.Namespace) -> None:
    from freeprop.data.curation import finetune_vace, read_decisions
    from freeprop.data.stages.synthesis import load_vace

    decisions = read_decisions(args.decisions)
    device, dtype = _device_and_dtype(args.device, args.dtype)
    pipe = load_vace(args.vace, device, dtype)
    summary = finetune_vace(pipe, args.dataset, decisions, args.output, args.steps, args.lr, args.rank)
    print(
        f"wrote {args.output} (LoRA; {summary['accepted']} accepted removals, loss {summary['first_loss']:.3f} → {summary['last_loss']:.3f})"
    )
    print(
        f"regenerate the removals: freeprop data build CONFIG models.vace_lora={args.output} 'local.tasks=[removal]' output=NEW"
    )


def cmd_data_synth(args: argparse.Namespace) -> None:
    from freeprop.data.synthetic import write_synthetic

    if args.motion < 0:
        raise FreePropInputError(
            f"--motion {args.motion:g}: must be ≥ 0 (0 = still scenes, 1 = as generated)"
        )
    splits = (("train", args.train), ("val", args.val), ("test", args.test), ("real", args.real))
    counts = {k: v for k, v in splits if v}
    height, width = args.size
    written = write_synthetic(
        args.output, counts, args.frames, height, width, shard_size=args.shard_size, motion=args.motion
    )
    print(
        f"wrote {sum(written.values())} pairs to {args.output} ({', '.join(f'{k} {v}' for k, v in written.items())})"
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from freeprop.demo import default_model, run_demo

    model = args.model or default_model()
    print(f"demo with model {model} → {args.output}")
    report = run_demo(args.output, model, steps=args.steps)
    for task, result in report.items():
        print(
            f"  {task:<12} PSNR  FreeProp {result['freeprop']['psnr']:.2f} dB   flow-warp "
            f"{result['flow_warp']['psnr']:.2f} dB   copy-source {result['copy_source']['psnr']:.2f} dB"
        )
    print(f"wrote {args.output}/index.html (open it in a browser)")


def cmd_presets(args: argparse.Namespace) -> None:
    import torch

    from freeprop.models import PRESETS, build_transformer

    print(f"{'preset':<26}{'layers':>7}{'heads':>7}{'dim':>7}{'in ch':>7}{'params':>10}")
    for name, cfg in PRESETS.items():
        with torch.device("meta"):
            count = sum(p.numel() for p in build_transformer(cfg).parameters())
        print(
            f"{name:<26}{cfg.num_layers:>7}{cfg.num_attention_heads:>7}{cfg.dim:>7}{cfg.in_channels:>7}"
            f"{count / 1e6:>9.2f}M"
        )


def cmd_heads_classify(args: argparse.Namespace) -> None:
    import torch

    from freeprop.models.heads import HeadClassifierConfig, classify_heads
    from freeprop.models.loading import load_transformer, model_config
    from freeprop.video import atomic_path, ensure_not_input, read_video, standardize, to_tensor

    videos = _collect_videos(args.videos) if args.videos else sample_clips()
    videos = videos[: args.num_videos]
    out = Path(args.output)
    ensure_not_input(out, *videos)
    codec = codec_for(model_config(args.model)["out_channels"], args.vae)  # cheap checks before loading
    model = load_transformer(args.model, args.weights).eval()
    frames, (height, width) = args.frames, args.size
    if frames is None or height is None:
        native = (17, 64, 64) if codec.temporal_factor == 1 else (81, 480, 832)
        frames = frames or native[0]
        height, width = (height, width) if height else native[1:]
    try:
        cfg = HeadClassifierConfig(
            epsilon=args.epsilon,
            rows_per_frame=args.rows_per_frame or None,
            timestep=args.timestep,
            seed=args.seed,
        )
    except ValueError as err:
        raise FreePropInputError(str(err)) from None

    def latents():
        for path in videos:
            std = standardize(read_video(path), height, width, num_frames=frames, fps=args.fps)
            with torch.no_grad():
                yield codec.encode(to_tensor(std.frames)[None])

    print(
        f"classifying {len(model.blocks)}×{model.config.num_attention_heads} heads on {len(videos)} video(s) "
        f"at {frames} frames {height}x{width}"
    )
    head_map, votes = classify_heads(model, latents(), cfg)
    report = {
        "head_map": head_map,
        "videos": [str(v) for v in videos],
        "config": vars(cfg) | {"model": str(args.model)},
        "temporal_votes": votes.sum(0).tolist(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=1))
    _print_head_summary(head_map)
    print(f"wrote {out}")


def _print_head_summary(head_map: dict) -> None:
    total_t = sum(v.count("temporal") for v in head_map.values())
    total = sum(len(v) for v in head_map.values())
    for layer, kinds in head_map.items():
        print(f"  layer {int(layer):>3}: " + "".join("T" if k == "temporal" else "." for k in kinds))
    print(f"{total_t}/{total} heads temporal (T), {total - total_t} spatial (.)")


def cmd_heads_show(args: argparse.Namespace) -> None:
    from freeprop.models.heads import read_head_map

    _print_head_summary(read_head_map(args.head_map))


# ----------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> None:
    from freeprop.eval.benchmarks import load_bench, read_case_list
    from freeprop.eval.runner import (
        EmbeddingCache,
        MetricModels,
        Scorer,
        parse_metrics,
        predict_with_freeprop,
        run,
    )

    # 1. Everything the user named, checked before any model loads.
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = read_case_list(args.cases) if args.cases else None
    bench = load_bench(args.bench, cases, args.unic_instruction)
    predictions = {}
    for spec in args.pred:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not Path(folder).is_dir():
            raise FreePropInputError(
                f"--pred {spec!r}: use NAME=FOLDER with an existing folder of predictions"
            )
        predictions[name] = Path(folder)
    has_targets = any(c.target is not None for c in bench.cases)
    metrics = parse_metrics(args.metrics, has_targets, args.judge is not None)
    for line in bench.missing[:10]:
        print(f"missing: {line}", file=sys.stderr)
    if len(bench.missing) > 10:
        print(f"missing: … {len(bench.missing)} in all", file=sys.stderr)
    device, dtype = _device_and_dtype(args.device, args.dtype)

    # 2. FreeProp itself when no predictions are given.
    notes = []
    if not predictions:
        folder = out_dir / "predictions" / "freeprop"
        skipped = predict_with_freeprop(
            bench, folder, args.model, args.steps, args.seed, device, dtype, args.frames
        )
        if skipped:
            notes.append(
                f"FreeProp not run on {len(skipped)} case(s) without a source video or edited first frame"
            )
            print(f"note: {notes[-1]}", file=sys.stderr)
        predictions["freeprop"] = folder

    # 3. Metrics and report.
    paths = {
        k: getattr(args, k)
        for k in ("clip", "dino", "pickscore", "pickscore_processor", "viclip", "viclip_tokenizer")
    }
    models = MetricModels.load(metrics, paths, device, dtype, args.judge, args.vlm_frames, args.swap_red_blue)
    cache = EmbeddingCache(None if args.no_cache else Path(args.cache_dir or out_dir / "cache"))
    summary = run(bench, predictions, Scorer(models, metrics, cache), out_dir, notes=notes)
    if summary:
        from freeprop.eval.report import markdown_table

        print(markdown_table(summary, bench.kind), end="")
        print(f"wrote {out_dir}/report.html, table.md, summary.json, per_case.csv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freeprop",
        description="FreeProp: first-frame propagation video editing (FFP-300K). Edit frame 0 of a video "
        "with any image editor; FreeProp carries the edit through the whole video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the bundled model and the flow-warp baseline on bundled samples")
    p.add_argument("-o", "--output", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--model", help="model to demo (default: the bundled one)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's own)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "edit",
        help="propagate an edited first frame through a video",
        description="Edit frame 0 of SOURCE with any image editor, save it as FIRST_FRAME, and FreeProp carries "
        "the edit through the whole video while keeping the source motion (paper §4).",
    )
    p.add_argument("source", help="the source video (any format FFmpeg reads, or a folder of frames)")
    p.add_argument(
        "first_frame", help="the edited first frame (PNG/JPEG/WebP), same aspect ratio as the video"
    )
    p.add_argument(
        "-o", "--output", required=True, help="output video: .mp4, .gif, or a folder name for PNG frames"
    )
    p.add_argument("--model", help="pipeline/transformer folder or preset name (default: the bundled model)")
    p.add_argument(
        "--weights", help="safetensors for a preset: FreeProp weights or a Wan2.1 Fun-Control checkpoint"
    )
    p.add_argument(
        "--vae", help="Wan2.1 VAE folder (for models on VAE latents, when the model folder has none)"
    )
    p.add_argument("--lora", help="adapter folder written by training (or a LoRA .safetensors file)")
    p.add_argument(
        "--fuse-lora", action="store_true", help="merge the LoRA into the weights (faster inference)"
    )
    p.add_argument(
        "--head-map",
        help="spatial/temporal head map JSON (freeprop heads classify); default: the one saved with --lora",
    )
    p.add_argument("--prompt", help="optional text describing the edited video (needs a text encoder)")
    p.add_argument("--negative-prompt", help="text to steer away from (with --prompt)")
    p.add_argument(
        "--steps",
        type=int,
        help="denoising steps (default: the model's own, e.g. 4 for the bundled model; else 30)",
    )
    p.add_argument(
        "--guidance", type=float, default=5.0, help="classifier-free guidance scale, with --prompt"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, help="edit only the first N frames (default: all)")
    p.add_argument(
        "--size", type=_parse_size, default=(None, None), help="output HEIGHTxWIDTH (default: source)"
    )
    p.add_argument(
        "--window", type=int, help="frames per window for long videos (default 81 with the Wan VAE)"
    )
    p.add_argument(
        "--overlap", type=int, default=1, help="frames shared by consecutive windows (cross-faded)"
    )
    p.add_argument("--scheduler", choices=["unipc", "euler"], default="unipc", help="flow-matching sampler")
    p.add_argument("--shift", type=float, help="flow shift (Wan: 3.0 at 480p, 5.0 at 720p; default 3.0)")
    _add_device_options(p)
    p.add_argument("--attention-backend", help="diffusers attention backend, e.g. flash, _native_cudnn, sage")
    p.add_argument(
        "--method",
        choices=["freeprop", "flow-warp"],
        help="freeprop (a model) or flow-warp (optical-flow propagation of the edit, no weights); default: "
        f"freeprop when a model option is given, else {DEFAULT_EDIT_METHOD} (measured best on real footage)",
    )
    p.add_argument(
        "--side-by-side", help="also write source | edited first frame | output to this video path"
    )
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser(
        "train",
        help="fine-tune a FreeProp model on pair-format data",
        description="Flow matching + LoRA (+ AST-RoPE, + identity-propagation self-distillation, paper §4.3) on "
        "accelerate. Multi-GPU: accelerate launch -m freeprop.cli train CONFIG.yaml. Checkpoints are saved "
        "every save_every steps and on SIGTERM/SIGINT; --resume continues exactly.",
    )
    p.add_argument("config", help="YAML recipe (see configs/)")
    p.add_argument(
        "overrides", nargs="*", help="key.sub=value overrides, e.g. optim.lr=1e-4 loss.variant=baseline"
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    p.set_defaults(func=cmd_train)

    data = sub.add_parser("data", help="datasets in the pair format (tar shards + index.parquet)")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser(
        "synth",
        help="procedural (source, edited) pairs with exact ground truth",
        description="Swap / removal / modification (local) and stylization (global) pairs of textured scenes "
        "with camera and object motion. Deterministic by seed; splits use disjoint seeds and the test split "
        "holds out a shape, a texture and a style. Re-running resumes (done samples are skipped).",
    )
    p.add_argument("output", help="output folder")
    p.add_argument("--train", type=int, default=3200, help="training pairs (default 3200)")
    p.add_argument("--val", type=int, default=80)
    p.add_argument("--test", type=int, default=80)
    p.add_argument(
        "--real",
        type=int,
        default=0,
        help="pairs of the `real` split: photographs (scikit-learn's and matplotlib's samples) panned, "
        "zoomed and cut out, with exact ground truth; for validation only (default 0)",
    )
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--size", type=_parse_size, default=(64, 64), help="HEIGHTxWIDTH (default 64x64)")
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument(
        "--motion",
        type=float,
        default=1.0,
        help="scale every camera and object motion (0 = still scenes: the first stage of the bundled "
        "model's curriculum; default 1)",
    )
    p.set_defaults(func=cmd_data_synth)

    p = sub.add_parser(
        "eval",
        help="score predictions on EditVerseBench / UNICBench / pair data with the paper's metrics",
        description="Paper §5.1 metrics (CLIP and DINO temporal consistency, Frame and Video text alignment, "
        "PickScore, VLM editing score) plus motion fidelity to the source and, on pair data, ground-truth "
        "metrics. Writes per_case.csv, summary.json, table.md (paper Table 1 layout) and report.html. "
        "Resumable: scored cases are kept in OUTPUT/cases/. Shard across GPUs with `accelerate launch -m "
        "freeprop.cli eval ...`. Learned metrics load their models from local folders or the Hugging Face "
        "cache; run `--metrics classic` without any weights.",
    )
    p.add_argument("--bench", required=True, help="editverse:PATH, unic:PATH or pairs:PATH[#SPLIT]")
    p.add_argument(
        "--cases", help="file of case ids to keep, one per line (e.g. the paper's 125-case subset)"
    )
    p.add_argument(
        "--pred",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a method's outputs: DIR/<id>/generate.mp4 or DIR/<id>.mp4 (repeatable; none = run FreeProp)",
    )
    p.add_argument(
        "--metrics",
        default="all",
        help="all (default: every metric that can run), paper, classic, or a list of "
        "clip,dino,frame,video,pick,vlm,motion,warp,gt",
    )
    p.add_argument("-o", "--output", required=True, help="report folder")
    p.add_argument("--clip", help="CLIP ViT-L/14 folder or id (default openai/clip-vit-large-patch14)")
    p.add_argument("--dino", help="DINOv2 folder or id (default facebook/dinov2-base)")
    p.add_argument("--pickscore", help="PickScore folder or id (default yuvalkirstain/PickScore_v1)")
    p.add_argument(
        "--pickscore-processor",
        help="processor for PickScore (default laion/CLIP-ViT-H-14-laion2B-s32B-b79K)",
    )
    p.add_argument("--viclip", help="ViClip-InternVid-10M-FLT.pth (needed for the video metric)")
    p.add_argument("--viclip-tokenizer", help="CLIP tokenizer folder for ViCLIP (default: --clip)")
    p.add_argument("--judge", help="VLM judge: qwen:PATH or openai:BASE_URL#MODEL (key in $OPENAI_API_KEY)")
    p.add_argument(
        "--vlm-frames",
        choices=("ffp10", "editverse"),
        default="ffp10",
        help="10 uniform frames (paper) or range(0,T,T//3)",
    )
    p.add_argument(
        "--swap-red-blue", action="store_true", help="reproduce EditVerse's BGR quirk for the judge"
    )
    p.add_argument(
        "--unic-instruction",
        default="Edit the video so that it shows: {caption}",
        help="VLM instruction for UNICBench",
    )
    p.add_argument("--cache-dir", help="embedding cache (default OUTPUT/cache)")
    p.add_argument("--no-cache", action="store_true", help="do not cache embeddings")
    p.add_argument("--model", help="FreeProp model when no --pred is given (default: the bundled one)")
    p.add_argument(
        "--steps", type=int, help="denoising steps for FreeProp (default: the model's own, else 30)"
    )
    p.add_argument("--frames", type=int, help="only the first N frames of each source (default all)")
    p.add_argument("--seed", type=int, default=0)
    _add_device_options(p)
    p.set_defaults(func=cmd_eval)

    p = data_sub.add_parser(
        "build",
        help="build FFP-300K-style pairs: local (swap/removal) and global (stylization) tracks",
        description="Runs the paper's two-track construction pipeline (§3) from a YAML config (see "
        "configs/data/ffp300k.yaml): Qwen2.5-VL analysis and captions, Grounding DINO + SAM2 masks, VACE "
        "synthesis, Wan I2V and depth for stylization, VLM quality control, dedup, and the pair writer. "
        "Resumable: with --resume, committed samples are skipped; per-sample failures are recorded.",
    )
    p.add_argument("config", help="build config YAML")
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. models.device=cuda local.frames=33"
    )
    p.add_argument("--executor", choices=("local", "ray"), help="override execution.executor")
    p.add_argument("--limit", type=int, help="build at most N new samples")
    p.add_argument("--resume", action="store_true", help="continue a dataset that already has an index")
    p.set_defaults(func=cmd_data_build)

    p = data_sub.add_parser(
        "review",
        help="HTML page to accept / reject candidate pairs (the removal curation of §3.3)",
        description="Writes OUTPUT/index.html with every pair of TASK side by side (source | edit). With --serve "
        "it is served on 127.0.0.1 and the Save button writes OUTPUT/decisions.json; without, Save downloads it.",
    )
    p.add_argument("dataset", help="pair-format folder")
    p.add_argument("-o", "--output", required=True, help="review folder")
    p.add_argument("--task", default="removal", help="which task to review (default removal)")
    p.add_argument("--limit", type=int, help="at most N pairs")
    p.add_argument("--serve", type=int, nargs="?", const=8765, help="serve on 127.0.0.1:PORT (default 8765)")
    p.set_defaults(func=cmd_data_review)

    p = data_sub.add_parser(
        "finetune-vace",
        help="LoRA-fine-tune VACE on the accepted removals (§3.3), to regenerate the removal subset",
    )
    p.add_argument("dataset", help="pair-format folder holding the reviewed removals")
    p.add_argument("--decisions", required=True, help="decisions.json from `freeprop data review`")
    p.add_argument("-o", "--output", required=True, help="LoRA folder to write")
    p.add_argument("--vace", default="Wan-AI/Wan2.1-VACE-14B-diffusers", help="VACE diffusers folder or id")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--rank", type=int, default=64)
    _add_device_options(p)
    p.set_defaults(func=cmd_data_finetune_vace)

    p = data_sub.add_parser("inspect", help="statistics of a pair dataset and a contact sheet of pairs")
    p.add_argument("dataset", help="pair-format folder (index.parquet + shards)")
    p.add_argument("--contact-sheet", help="write a PNG of sample pairs here")
    p.add_argument("--count", type=int, default=12, help="pairs on the contact sheet (default 12)")
    p.set_defaults(func=cmd_data_inspect)

    p = sub.add_parser("presets", help="list model presets and their parameter counts")
    p.set_defaults(func=cmd_presets)

    heads = sub.add_parser("heads", help="spatial/temporal attention-head classification (paper §8.1)")
    heads_sub = heads.add_subparsers(dest="heads_command", required=True, metavar="ACTION")
    p = heads_sub.add_parser(
        "classify",
        help="classify every self-attention head by majority vote over videos",
        description="Runs the model as identity propagation on each video, measures block attention densities "
        "(Eq. 6) and labels each head spatial or temporal (Eq. 7), then takes a majority vote across videos.",
    )
    p.add_argument("videos", nargs="*", help="video files or folders (default: the bundled sample clips)")
    p.add_argument("--model", default="tiny", help="preset name or diffusers model folder (default: tiny)")
    p.add_argument("--weights", help=".safetensors weights for a preset")
    p.add_argument("--vae", help="Wan2.1 VAE folder (needed for models on VAE latents)")
    p.add_argument("-o", "--output", default="heads.json", help="where to write the head map JSON")
    p.add_argument("--num-videos", type=int, default=10, help="videos in the vote (paper: 10)")
    p.add_argument(
        "--frames", type=int, help="frames per video (default: 17 for pixel-latent models, 81 for Wan)"
    )
    p.add_argument(
        "--size", type=_parse_size, default=(None, None), help="HEIGHTxWIDTH (default 64x64 / 480x832)"
    )
    p.add_argument("--fps", type=float, default=16.0, help="resample videos to this frame rate (Wan: 16)")
    p.add_argument("--epsilon", type=float, default=1e-6, help="density threshold ε of Eq. 6")
    p.add_argument(
        "--rows-per-frame", type=int, default=64, help="sampled query rows per latent frame (0 = exact)"
    )
    p.add_argument("--timestep", type=float, default=500.0, help="probe noise level in [0, 1000]")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_heads_classify)

    p = heads_sub.add_parser("show", help="print a head map as a per-layer summary")
    p.add_argument("head_map", help="JSON written by `freeprop heads classify`")
    p.set_defaults(func=cmd_heads_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except FreePropInputError as err:
        print(f"freeprop: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("freeprop: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
