"""The `freeprop` command line.

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
    from freeprop.codecs import PixelCodec, WanVAECodec

    if vae:
        codec = WanVAECodec.from_pretrained(vae)
        if codec.latent_channels != channels:
            raise FreePropInputError(
                f"{vae}: VAE has {codec.latent_channels} latent channels, model needs {channels}"
            )
        return codec
    factor = round((channels / 3) ** 0.5)
    if 3 * factor * factor == channels and channels != 16:
        return PixelCodec(factor)
    raise FreePropInputError(
        f"this model takes {channels}-channel VAE latents; pass --vae PATH (a Wan2.1 VAE folder)"
    )


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


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


def read_head_map(path: str | Path) -> dict:
    """A head map from JSON: either the map itself or a `freeprop heads classify` report."""
    path = Path(path)
    if not path.is_file():
        raise FreePropInputError(f"{path}: no such head-map file; run `freeprop heads classify` first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FreePropInputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    return data.get("head_map", data)


def cmd_heads_show(args: argparse.Namespace) -> None:
    _print_head_summary(read_head_map(args.head_map))


# ----------------------------------------------------------------------------------------------
# Parser
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freeprop",
        description="FreeProp: first-frame propagation video editing (FFP-300K). Edit frame 0 of a video "
        "with any image editor; FreeProp carries the edit through the whole video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
