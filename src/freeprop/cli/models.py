"""`freeprop presets` and `freeprop heads`: model sizes and the spatial/temporal head map (paper §8.1)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from freeprop.cli.common import (
    codec_for,
    collect_videos,
    format_size,
    non_negative_int,
    parse_size,
    positive_int,
    resolve_model,
    sample_clips,
)
from freeprop.defaults import BUNDLED_MODEL
from freeprop.errors import FreePropInputError


def add_parser(sub) -> None:
    p = sub.add_parser("presets", help="list model presets and their parameter counts")
    p.set_defaults(func=cmd_presets)
    heads = sub.add_parser("heads", help="spatial/temporal attention-head classification (paper §8.1)")
    heads_sub = heads.add_subparsers(dest="heads_command", required=True, metavar="ACTION")
    _add_classify(heads_sub)
    p = heads_sub.add_parser("show", help="print a head map as a per-layer summary")
    p.add_argument("head_map", help="JSON written by `freeprop heads classify`")
    p.set_defaults(func=cmd_heads_show)


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


# ----------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------


def _add_classify(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="classify every self-attention head by majority vote over videos",
        description="Runs the model as identity propagation on each video, measures block attention densities "
        "(Eq. 6) and labels each head spatial or temporal (Eq. 7), then takes a majority vote across videos.",
    )
    p.add_argument("videos", nargs="*", help="video files or folders (default: the bundled sample clips)")
    p.add_argument("--model", help=f"'{BUNDLED_MODEL}' (default), a model folder, or a preset name with --weights")
    p.add_argument("--weights", help=".safetensors weights for a preset")
    p.add_argument("--random-weights", action="store_true", help="allow a preset with no --weights (untrained)")
    p.add_argument("--vae", help="Wan2.1 VAE folder (needed for models on VAE latents)")
    p.add_argument("-o", "--output", default="heads.json", help="where to write the head map JSON")
    p.add_argument("--num-videos", type=positive_int, default=10, help="videos in the vote (paper: 10)")
    p.add_argument("--frames", type=positive_int, help="frames per video (default: 17 for pixel-latent models, 81 for Wan)")
    p.add_argument("--size", type=parse_size, default=(None, None), help="HEIGHTxWIDTH (default 64x64 / 480x832)")
    p.add_argument("--fps", type=float, default=16.0, help="resample videos to this frame rate (Wan: 16)")
    p.add_argument("--epsilon", type=float, default=1e-6, help="density threshold ε of Eq. 6")
    p.add_argument("--rows-per-frame", type=non_negative_int, default=64,
                   help="sampled query rows per latent frame (0 = exact)")
    p.add_argument("--timestep", type=float, default=500.0, help="probe noise level in [0, 1000]")
    p.add_argument("--aggregate", choices=("vote", "mean"), default="vote",
                   help="vote: Eq. 7 per video, then majority (paper); mean: Eq. 7 on densities averaged over videos")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_heads_classify)


def cmd_heads_classify(args: argparse.Namespace) -> None:
    import torch

    from freeprop.models.heads import HeadClassifierConfig, classify_heads
    from freeprop.models.loading import load_model, model_config
    from freeprop.video import atomic_path, ensure_not_input, read_video, standardize, to_tensor

    videos = collect_videos(args.videos) if args.videos else sample_clips()
    videos = videos[: args.num_videos]
    out = Path(args.output)
    ensure_not_input(out, *videos)
    spec = resolve_model(args.model, args.weights, args.random_weights)
    codec = codec_for(model_config(spec)["out_channels"], args.vae)  # cheap checks before loading
    model = load_model(spec, args.weights).eval()  # folders, FreeProp or Fun-Control weights; on meta first
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
            aggregate=args.aggregate,
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
        f"at {frames} frames {format_size(height, width)}"
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
    print_head_summary(head_map)
    print(f"wrote {out}")


def print_head_summary(head_map: dict) -> None:
    total_t = sum(v.count("temporal") for v in head_map.values())
    total = sum(len(v) for v in head_map.values())
    for layer, kinds in head_map.items():
        print(f"  layer {int(layer):>3}: " + "".join("T" if k == "temporal" else "." for k in kinds))
    print(f"{total_t}/{total} heads temporal (T), {total - total_t} spatial (.)")


def cmd_heads_show(args: argparse.Namespace) -> None:
    from freeprop.models.heads import read_head_map

    print_head_summary(read_head_map(args.head_map))
