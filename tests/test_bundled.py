"""The bundled model (src/freeprop/assets/freeprop-small): a regression guard.

It must load strictly from the package as the default model, fit the 20 MB budget, and on four fixed
held-out test pairs (one per task, 17 frames at 64×64, 20 UniPC steps, seed 0) stay within 0.5 dB of
the PSNRs measured when it was bundled and keep beating the trivial baselines it beat then. Measured
at bundling: it beats copy-source on modification and stylization and frozen-first-frame on every
pair but the removal one; on swap and removal copying the source is still better in PSNR (most of the
frame is unchanged, and this 8.7 M-parameter model does not reproduce the background exactly).
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from freeprop.data.synthetic import SPLIT_SEEDS, make_pair
from freeprop.demo import default_model
from freeprop.eval.metrics.ground_truth import psnr

BUNDLED = Path(default_model())
PAIRS = [("swap", 0), ("removal", 1), ("modification", 2), ("stylization", 3)]  # (task, test-split index)
# PSNR (dB) vs the ground truth when bundled: (model, copy-source, frozen-first-frame), and what it beat.
EXPECTED = {
    "swap": ((24.07, 26.84, 20.20), {"frozen"}),
    "removal": ((24.23, 29.68, 25.55), set()),
    "modification": ((22.90, 22.60, 19.97), {"copy", "frozen"}),
    "stylization": ((15.26, 14.57, 12.42), {"copy", "frozen"}),
}

pytestmark = pytest.mark.skipif(BUNDLED.name != "freeprop-small", reason="no bundled model in this checkout")


@pytest.fixture(scope="module")
def results():
    from freeprop.pipeline import load_pipeline

    pipe = load_pipeline(str(BUNDLED))
    pipe.set_progress_bar_config(disable=True)
    out = {}
    for task, seed in PAIRS:
        pair = make_pair(SPLIT_SEEDS["test"] + seed, "test", task, frames=17, height=64, width=64)
        frames = pipe(
            pair.source, pair.target[0], num_inference_steps=20, generator=torch.Generator().manual_seed(0)
        ).frames
        frozen = np.repeat(pair.target[:1], len(pair.target), axis=0)
        out[task] = (psnr(frames, pair.target), psnr(pair.source, pair.target), psnr(frozen, pair.target))
    return out


def test_bundle_is_the_default_and_fits_the_budget():
    size = sum(p.stat().st_size for p in BUNDLED.rglob("*") if p.is_file())
    assert size <= 20 * 2**20, f"{size / 2**20:.1f} MiB"
    assert (BUNDLED / "model_index.json").is_file()


def test_bundled_model_beats_the_trivial_baselines(results):
    for task, (ours, copy, frozen) in results.items():
        (expected_ours, expected_copy, expected_frozen), beaten = EXPECTED[task]
        assert copy == pytest.approx(expected_copy, abs=1e-2) and frozen == pytest.approx(
            expected_frozen, abs=1e-2
        )
        assert ours > expected_ours - 0.5, f"{task}: {ours:.2f} dB, bundled at {expected_ours:.2f}"
        for name, baseline in (("copy", copy), ("frozen", frozen)):
            if name in beaten:
                assert ours > baseline, f"{task}: no longer beats {name} ({ours:.2f} vs {baseline:.2f} dB)"
    mean = np.mean([r for r in results.values()], axis=0)
    assert mean[0] > mean[2]  # on average it beats the frozen first frame
