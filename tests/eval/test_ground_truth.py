import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from freeprop.eval.metrics.ground_truth import (
    all_metrics,
    first_frame_psnr,
    flicker,
    flicker_ratio,
    psnr,
    ssim,
    warping_error,
)
from tests.conftest import translating_clip


def test_psnr_and_ssim_match_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 20, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255))
    expected = np.mean([structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b)])
    assert ssim(a, b) == pytest.approx(expected)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)


def test_masked_psnr_hand_case():
    target = np.zeros((1, 2, 2, 3), np.uint8)
    output = target.copy()
    output[0, 0, 0] = 10  # error only at pixel (0, 0)
    mask = np.array([[[1, 0], [0, 0]]])
    assert psnr(output, target, mask) == pytest.approx(10 * np.log10(255**2 / 100))
    assert psnr(output, target, 1 - mask) == float("inf")
    assert np.isnan(psnr(output, target, np.zeros_like(mask)))


def test_flicker_and_first_frame():
    still = np.full((4, 8, 8, 3), 100, np.uint8)
    blink = still.copy()
    blink[1::2] = 110
    assert flicker(still) == 0 and flicker(blink) == pytest.approx(10.0)
    assert flicker_ratio(still, still) == 1.0 and flicker_ratio(blink, still) == float("inf")
    assert first_frame_psnr(blink, still[0]) == float("inf")


def test_warping_error_is_small_for_the_source_itself_and_large_for_noise():
    clip = translating_clip(frames=5)  # a pure translation, warped by its own flow
    own = warping_error(clip, clip)
    noise = np.random.default_rng(0).integers(0, 256, clip.shape, dtype=np.uint8)
    assert own < 3 and warping_error(noise, clip) > 30
    report = all_metrics(clip, clip, clip, mask=np.ones(clip.shape[:3]))
    assert set(report) == {
        "psnr",
        "ssim",
        "first_frame_psnr",
        "flicker_ratio",
        "warping_error",
        "masked_psnr",
    }
