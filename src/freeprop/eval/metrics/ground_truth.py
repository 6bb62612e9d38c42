"""Metrics against a ground-truth target video (synthetic pairs, FFP-300K test splits).

All take uint8 videos `[F, H, W, 3]` and return floats:

- `psnr` — 10·log10(255² / MSE) over the whole video (optionally only inside a mask `[F, H, W]`);
- `ssim` — scikit-image's `structural_similarity` per frame (RGB, data range 255), averaged;
- `first_frame_psnr` — how faithfully frame 0 reproduces the given edited first frame;
- `flicker` — mean absolute frame-to-frame difference of a video; `flicker_ratio` = output / target
  (1 = as steady as the target, > 1 = flickers more);
- `warping_error` — mean absolute difference between each output frame and the previous output
  frame warped by the *source* video's optical flow, on pixels where that flow is forward–backward
  consistent (motion fidelity to the source: 0 = the output moves exactly as the source does).
"""

from __future__ import annotations

import numpy as np

from freeprop.baselines.flow_warp import FlowEstimator, consistency_mask, warp


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {a.shape} vs {b.shape}")


def psnr(output: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over all pixels, or over `mask` > 0 pixels (`mask` [F, H, W]); inf if identical."""
    _check(output, target)
    err = (output.astype(np.float64) - target.astype(np.float64)) ** 2
    if mask is not None:
        keep = np.broadcast_to(np.asarray(mask)[..., None] > 0, err.shape)
        if not keep.any():
            return float("nan")
        mse = err[keep].mean()
    else:
        mse = err.mean()
    return psnr_from_mse(mse)


def psnr_from_mse(mse: float) -> float:
    """10·log10(255² / MSE) in dB for an MSE in grey levels²; inf for 0."""
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Mean per-frame SSIM (scikit-image, Gaussian-free 7×7 windows, RGB, data range 255)."""
    from skimage.metrics import structural_similarity

    _check(output, target)
    return float(
        np.mean(
            [structural_similarity(o, t, channel_axis=-1, data_range=255) for o, t in zip(output, target)]
        )
    )


def first_frame_psnr(output: np.ndarray, edited_first: np.ndarray) -> float:
    return psnr(output[:1], edited_first[None])


def flicker(video: np.ndarray) -> float:
    """Mean |frame t − frame t−1| in grey levels."""
    return float(np.abs(np.diff(video.astype(np.float32), axis=0)).mean()) if len(video) > 1 else 0.0


def flicker_ratio(output: np.ndarray, target: np.ndarray) -> float:
    ref = flicker(target)
    return flicker(output) / ref if ref > 0 else float("inf") if flicker(output) > 0 else 1.0


def warping_error(output: np.ndarray, source: np.ndarray, flow: FlowEstimator | None = None) -> float:
    """Mean |out_t − warp(out_{t−1}, source flow t → t−1)| over consistent pixels, in grey levels."""
    flow = flow or FlowEstimator()
    errors, weights = 0.0, 0.0
    for t in range(1, len(source)):
        back = flow(source[t], source[t - 1])
        valid = consistency_mask(back, flow(source[t - 1], source[t]))
        warped = warp(output[t - 1].astype(np.float32), back)
        diff = np.abs(output[t].astype(np.float32) - warped).mean(axis=-1)
        errors += float((diff * valid).sum())
        weights += float(valid.sum())
    return errors / weights if weights else 0.0


def all_metrics(
    output: np.ndarray,
    target: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray | None = None,
    flow: FlowEstimator | None = None,
) -> dict[str, float]:
    """Every ground-truth metric for one video (masked PSNR only when a mask is given)."""
    result = {
        "psnr": psnr(output, target),
        "ssim": ssim(output, target),
        "first_frame_psnr": first_frame_psnr(output, target[0]),
        "flicker_ratio": flicker_ratio(output, target),
        "warping_error": warping_error(output, source, flow),
    }
    if mask is not None and np.asarray(mask).any():
        result["masked_psnr"] = psnr(output, target, mask)
    return result
