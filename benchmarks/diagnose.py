"""Does a trained model use the edited first frame ẑ? Four measurements on held-out pairs.

1. **Edit sensitivity**: sample with the true edited frame and again with the *unedited* source frame 0
   (same noise, `--sensitivity-steps` steps: 4 unless told); inside the edit mask, on frames t ≥ 1,
   how much does the output change, as a fraction of how much the truth changes there
   (|target − source|)? 0 = ẑ is ignored, 1 = the whole edit is carried.
2. **Attention to frame 0**: the share of self-attention probability that queries of latent frames
   t ≥ 1 put on frame-0 keys, per block, at σ = 0.5 (uniform attention would give 1/F').
3. **x₀ error per σ bucket** (‖x̂₀ − x₀‖² = σ²·L_FM), with the true ẑ and with ẑ replaced by the
   source's frame 0: where the two are equal, the network learned nothing from ẑ at that noise level.
4. **Flicker and PSNR vs sampling steps**.
5. **Identity**: given the *unedited* source frame 0 as ẑ, how close does the output (at the model's
   stored sampling) stay to the source on frames t ≥ 1 (PSNR; ∞ = it changes nothing)? What a model
   changes here it also changes wherever a real edit does not reach.

With `--by-speed`, only the edit sensitivity of each local pair at the model's stored sampling, against
the speed of its edit (the edit mask's centroid, px/frame): their correlation and the mean
sensitivity of slow (< 0.6 px/frame) and fast (≥ 2) edits. With `--by-frame`, only the edit
sensitivity of each frame t ≥ 1 (the model's stored sampling), averaged over the local pairs, and the
masked PSNR inside the edit of each frame t ≥ 0 (MSE pooled over the pairs) of the model's raw output
(frame 0 not replaced by ẑ: how well it reproduces the frame it is given), of flow-warp and of copying
the source; and the PSNR at which a linear read-out, fitted on the validation split's frame-0 tokens,
recovers the edit's residual from the network's patch embedding (is the edit still in its input?).

    python benchmarks/diagnose.py MODEL_FOLDER [--pairs 12] [--data data/synth --split test]
    python benchmarks/diagnose.py MODEL_FOLDER --by-speed --pairs 48 --split real
    python benchmarks/diagnose.py MODEL_FOLDER --by-frame --pairs 48 --split real
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from freeprop.baselines.flow_warp import propagate
from freeprop.data.pairs import PairDataset
from freeprop.errors import FreePropInputError, run_script
from freeprop.eval.metrics.ground_truth import flicker_ratio, psnr, psnr_from_mse
from freeprop.models.transformer import build_ffp_input
from freeprop.pipeline import TEXT_TOKENS, load_pipeline
from freeprop.training.losses import add_noise
from freeprop.video import to_tensor

BUCKETS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


def sample(pipe, source, first, steps, seed=0):
    return pipe(
        source,
        first,
        num_inference_steps=steps,
        replace_first_frame=False,
        generator=torch.Generator().manual_seed(seed),
    ).frames


def edit_change(pipe, pair, steps: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(out(ẑ), |out(ẑ) − out(src₀)|, |target − source|): float [F, H, W, 3] each, the same noise for both
    samples."""
    with_edit = sample(pipe, pair.source, pair.target[0], steps).astype(np.float32)
    without = sample(pipe, pair.source, pair.source[0], steps).astype(np.float32)
    return with_edit, np.abs(with_edit - without), np.abs(pair.target.astype(np.float32) - pair.source)


def pair_sensitivity(pipe, pair, steps: int | None) -> float:
    """|out(ẑ) − out(src₀)| / |target − source| inside the mask, frames ≥ 1 (NaN with an empty mask)."""
    mask = pair.mask[1:] > 0
    if not mask.any():
        return float("nan")
    _, moved, truth = edit_change(pipe, pair, steps)
    return float(moved[1:][mask].mean() / truth[1:][mask].mean())


def by_frame(pipe, pairs, min_pixels: int = 10) -> dict[str, list[float]]:
    """Per frame, over the pairs whose mask covers at least `min_pixels` pixels of it: the edit sensitivity
    (frames t ≥ 1; does the edit fade as the clip goes on?) and the masked PSNR (frames t ≥ 0, MSE pooled)
    of the model's raw output, of flow-warp (residual) and of the source: is the edit carried precisely
    where nothing has moved yet?"""
    sensitivity, errors = [], {"model": [], "flow-warp": [], "copy-source": []}
    for pair in pairs:
        out, moved, truth = edit_change(pipe, pair, None)
        masks, target = pair.mask > 0, pair.target.astype(np.float32)
        outputs = {"model": out, "flow-warp": propagate(pair.source, pair.target[0]), "copy-source": pair.source}
        enough = [masks[t].sum() >= min_pixels for t in range(len(masks))]
        sensitivity.append([moved[t][masks[t]].mean() / truth[t][masks[t]].mean() if enough[t] else np.nan
                            for t in range(1, len(masks))])
        for name, frames in outputs.items():
            squared = (frames.astype(np.float32) - target) ** 2
            errors[name].append([squared[t][masks[t]].mean() if enough[t] else np.nan for t in range(len(masks))])
    result = {"sensitivity": [float(v) for v in np.nanmean(np.array(sensitivity, np.float64), 0)]}
    for name, rows in errors.items():
        result[f"masked_psnr_{name}"] = [psnr_from_mse(v) for v in np.nanmean(np.array(rows, np.float64), 0)]
    return result


def edit_sensitivity(pipe, pairs, steps: int | None) -> float:
    """Mean over pairs of `pair_sensitivity`."""
    return float(np.nanmean([pair_sensitivity(pipe, pair, steps) for pair in pairs]))


def edit_speed(mask: np.ndarray) -> float:
    """Mean distance (px) the centroid of a `[F, H, W]` edit mask moves between consecutive frames that
    both have one."""
    centroids = [np.argwhere(m > 0).mean(0) if (m > 0).any() else None for m in mask]
    steps = [np.hypot(*(b - a)) for a, b in zip(centroids, centroids[1:]) if a is not None and b is not None]
    return float(np.mean(steps)) if steps else float("nan")


def sensitivity_by_speed(pipe, pairs) -> dict[str, float]:
    """Edit sensitivity (the model's stored sampling) against the edit's speed, over local pairs."""
    rows = np.array([(pair_sensitivity(pipe, p, None), edit_speed(p.mask)) for p in pairs])
    rows = rows[np.isfinite(rows).all(1)]
    sens, speed = rows.T
    return {
        "pairs": len(rows),
        "correlation": float(np.corrcoef(sens, speed)[0, 1]),
        "mean_speed": float(speed.mean()),
        "sensitivity": float(sens.mean()),
        "sensitivity_slow": float(sens[speed < 0.6].mean()),
        "sensitivity_fast": float(sens[speed >= 2].mean()),
    }


def identity_psnr(pipe, pairs) -> float:
    """Mean over pairs of PSNR(out(src₀), source) on frames ≥ 1: what the model changes with no edit."""
    outs = [pipe(p.source, p.source[0], generator=torch.Generator().manual_seed(0)).frames for p in pairs]
    return float(np.mean([psnr(o[1:], p.source[1:]) for o, p in zip(outs, pairs)]))


@torch.no_grad()
def frame0_tokens(pipe, pairs, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame-0 tokens of `pairs`: the patch embedding of [noise | z_src | ẑ | M] `(N, D)`, the edit's
    residual ẑ − z_src per token `(N, C·p²)` and the share of each token's pixels inside the edit `(N,)`."""
    embed, patch = pipe.transformer.patch_embedding, pipe.transformer.config.patch_size[-1]
    pixels = pipe.codec.spatial_factor * patch  # a token's side in pixels
    hidden, residual, share = [], [], []
    for pair in pairs:
        z_first, z_src = (pipe.codec.encode(to_tensor(v[:1])[None]) for v in (pair.target, pair.source))  # (1, C, 1, h, w)
        noise = torch.randn(z_src.shape, generator=generator)
        x = build_ffp_input(noise, z_src, z_first, pipe.transformer.mask_channels).to(embed.weight.dtype)
        hidden.append(embed(x)[0, :, 0].flatten(1).T.float())  # (tokens, D)
        edit = F.pixel_unshuffle((z_first - z_src)[:, :, 0], patch)  # (1, C·p², h/p, w/p)
        residual.append(edit[0].flatten(1).T)
        mask = torch.from_numpy((pair.mask[:1] > 0).astype(np.float32))[None]  # (1, 1, H, W)
        share.append(F.avg_pool2d(mask, pixels).flatten())
    return torch.cat(hidden), torch.cat(residual), torch.cat(share)


def embedding_readout_psnr(pipe, fit_pairs, pairs, ridge: float = 1e-3) -> float:
    """PSNR (grey levels, so for a pixel codec, whose latents are pixels in [-1, 1]) at which a linear map,
    fitted by ridge regression on `fit_pairs`' frame-0 tokens, reads the edit's residual ẑ − z_src back
    out of the patch embedding of `pairs`' frame-0 tokens that lie mostly (> ½) inside the edit: does the
    network's input still hold the edit it is asked to render?"""
    def with_bias(hidden):
        return torch.cat([hidden, torch.ones(len(hidden), 1)], 1).double()

    generator = torch.Generator().manual_seed(0)
    hidden, residual, _ = frame0_tokens(pipe, fit_pairs, generator)
    design = with_bias(hidden)
    gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=torch.float64)
    readout = torch.linalg.solve(gram, design.T @ residual.double())
    hidden, residual, share = frame0_tokens(pipe, pairs, generator)
    inside = share > 0.5
    error = with_bias(hidden) @ readout - residual
    return psnr_from_mse(float((error[inside] ** 2).mean()) * 127.5**2)


def latents(pipe, pair):
    codec = pipe.codec
    z_src = codec.encode(to_tensor(pair.source)[None])
    z_tgt = codec.encode(to_tensor(pair.target)[None])
    return (
        z_src,
        z_tgt,
        codec.encode(to_tensor(pair.target[:1])[None]),
        codec.encode(to_tensor(pair.source[:1])[None]),
    )


@torch.no_grad()
def fm_per_bucket(pipe, pairs, draws: int = 8) -> dict[str, dict[str, float]]:
    """L_FM per σ bucket with the true ẑ and with ẑ := source frame 0 (same noise and σ)."""
    model = pipe.transformer
    text = torch.zeros(1, TEXT_TOKENS, model.config.text_dim)
    g = torch.Generator().manual_seed(0)
    out = {f"{lo:.2f}-{hi:.2f}": {"true_edit": [], "unedited": []} for lo, hi in BUCKETS}
    for pair in pairs:
        z_src, z_tgt, z_edit, z_plain = latents(pipe, pair)
        x0 = model.target_latents(z_tgt, z_src)
        for lo, hi in BUCKETS:
            for _ in range(draws // len(BUCKETS) or 1):
                sigma = torch.empty(1).uniform_(lo, hi, generator=g)
                noise = torch.randn(x0.shape, generator=g)
                x_t, v = add_noise(x0, noise, sigma)
                for name, first in (("true_edit", z_edit), ("unedited", z_plain)):
                    x = build_ffp_input(x_t, z_src, first, model.mask_channels)
                    v_hat = model.velocity(model(x, sigma * 1000, text).sample, x_t, sigma)
                    # compared as x̂₀ = x_t − σ·v̂ (= σ²·‖v̂ − v‖²), one scale for velocity and sample models
                    out[f"{lo:.2f}-{hi:.2f}"][name].append(float(((sigma * (v_hat - v)) ** 2).mean()))
    return {b: {k: float(np.mean(v)) for k, v in m.items()} for b, m in out.items()}


@torch.no_grad()
def attention_to_first_frame(pipe, pairs, sigma: float = 0.5) -> list[float]:
    """Per block: mean attention share of frame-(t ≥ 1) queries on frame-0 keys (heads, pairs averaged)."""
    model = pipe.transformer
    p_t, p_h, p_w = model.config.patch_size
    shares: dict[int, list[float]] = {}
    grid = {}  # tokens per latent frame of the clip being run

    def capture(layer, q, k):  # q, k: (B, S, H, Dh) after RoPE
        probs = torch.softmax(torch.einsum("bshd,bthd->bhst", q, k) / q.shape[-1] ** 0.5, dim=-1)
        n = grid["tokens"]
        shares.setdefault(layer, []).append(float(probs[:, :, n:, :n].sum(-1).mean()))

    processors = [block.attn1.processor for block in model.blocks]
    for proc in processors:
        proc.capture = capture
    text = torch.zeros(1, TEXT_TOKENS, model.config.text_dim)
    try:
        for pair in pairs:
            z_src, z_tgt, z_edit, _ = latents(pipe, pair)
            grid["tokens"] = (z_src.shape[3] // p_h) * (z_src.shape[4] // p_w)
            x0 = model.target_latents(z_tgt, z_src)
            x_t, _ = add_noise(
                x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), torch.tensor([sigma])
            )
            model(
                build_ffp_input(x_t, z_src, z_edit, model.mask_channels), torch.tensor([sigma * 1000]), text
            )
    finally:
        for proc in processors:
            proc.capture = None
    return [float(np.mean(shares[i])) for i in sorted(shares)]


def first_frames(pair, frames: int | None):
    """`pair` cut to its first `frames` frames (None: as it is)."""
    if frames is None:
        return pair
    mask = None if pair.mask is None else pair.mask[:frames]
    return dataclasses.replace(pair, source=pair.source[:frames], target=pair.target[:frames], mask=mask)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="a pipeline folder")
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--split", default="test")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 20])
    parser.add_argument("--sensitivity-steps", type=int, default=4,
                        help="sampling steps of the edit-sensitivity measurement (default 4, as docs/model.md's "
                        "figures; 0 = the model's own sampling, as --by-speed and --by-frame use)")
    parser.add_argument("--by-speed", action="store_true", help="only edit sensitivity against the edit's speed")
    parser.add_argument("--by-frame", action="store_true", help="only edit sensitivity and masked PSNR of each frame")
    parser.add_argument("--frames", type=int, help="only the first N frames of each clip (a model trained on "
                        "N-frame clips; default: all)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if args.frames is not None and args.frames < 2:
        raise FreePropInputError(f"--frames {args.frames}: a clip needs frame 0 and at least one more")

    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    dataset = PairDataset(args.data, split=args.split)
    pairs = [first_frames(dataset[i], args.frames) for i in range(min(args.pairs, len(dataset)))]
    local = [p for p in pairs if p.mask is not None]
    if args.by_speed:
        return report({"model": args.model, "split": args.split, **sensitivity_by_speed(pipe, local)}, args.out)
    if args.by_frame:
        frames = by_frame(pipe, local)
        val = PairDataset(args.data, split="val")
        fit = [p for p in (val[i] for i in range(min(args.pairs, len(val)))) if p.mask is not None]  # frame 0 only
        frames["embedding_readout_psnr"] = embedding_readout_psnr(pipe, fit, local)
        return report({"model": args.model, "split": args.split, "pairs": len(local), **frames}, args.out)
    frames = pipe.codec.encode(to_tensor(pairs[0].source)[None]).shape[2]
    result = {
        "model": args.model,
        "edit_sensitivity": edit_sensitivity(pipe, local, args.sensitivity_steps or None),
        "sensitivity_steps": args.sensitivity_steps or "the model's own",
        "identity_psnr": identity_psnr(pipe, pairs),
        "attention_to_frame0": attention_to_first_frame(pipe, pairs[:4]),
        "attention_uniform_share": 1 / frames,
        "fm_per_sigma": fm_per_bucket(pipe, pairs),
        "by_steps": {},
    }
    for steps in args.steps:
        outs = [
            pipe(
                p.source, p.target[0], num_inference_steps=steps, generator=torch.Generator().manual_seed(0)
            ).frames
            for p in pairs
        ]
        result["by_steps"][steps] = {
            "psnr": float(np.mean([psnr(o, p.target) for o, p in zip(outs, pairs)])),
            "flicker_ratio": float(np.mean([flicker_ratio(o, p.target) for o, p in zip(outs, pairs)])),
        }
    report(result, args.out)


def report(result: dict, out: str | None) -> None:
    print(json.dumps(result, indent=1))
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    sys.exit(run_script(main, "diagnose.py"))
