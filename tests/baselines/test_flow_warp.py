import numpy as np
import pytest

from freeprop.baselines.flow_warp import FlowEstimator, compose, consistency_mask, edit_mask, propagate, warp
from freeprop.data.synthetic import make_pair
from freeprop.eval.metrics.ground_truth import psnr
from tests.conftest import moving_pattern, translating_clip


def test_warp_by_constant_flow_is_a_shift():
    image = np.random.default_rng(0).random((10, 12)).astype(np.float32)
    flow = np.zeros((10, 12, 2), np.float32)
    flow[..., 0] = 2.0  # sample two pixels to the right
    np.testing.assert_allclose(warp(image, flow)[:, :-2], image[:, 2:])
    np.testing.assert_allclose(compose(flow, flow)[2:-2, 2:-6, 0], 4.0)
    assert consistency_mask(flow, -flow).all() and not consistency_mask(flow, flow).any()


def test_dis_recovers_a_translation():
    clip = translating_clip(frames=2, dx=3, dy=2)  # content moves 3 px left and 2 up per frame
    flow = FlowEstimator()(clip[1], clip[0])
    assert abs(np.median(flow[..., 0]) - 3.0) < 0.3 and abs(np.median(flow[..., 1]) - 2.0) < 0.3


@pytest.mark.parametrize("mode", ["direct", "chained"])
def test_propagating_the_unedited_frame_reconstructs_a_translation(mode):
    clip = translating_clip(frames=5)  # up to 8 px; DIS (medium) on 64×64 fails near 10 px in one jump
    out = propagate(clip, clip[0], mode=mode, composite="never")
    assert psnr(out[:, 8:-8, 8:-8], clip[:, 8:-8, 8:-8]) > 30


def test_local_composite_keeps_the_source_outside_the_edit():
    pair = make_pair(7, "val", "swap", frames=9, height=64, width=64)
    out = propagate(pair.source, pair.target[0])
    far = edit_mask(pair.source[0], pair.target[0], dilate=12) == 0
    far_all = np.broadcast_to(far, pair.source.shape[:3]) & (pair.mask == 0)
    np.testing.assert_array_equal(out[far_all], pair.source[far_all])
    assert psnr(out, pair.target) > psnr(pair.source, pair.target)  # beats copying the source


def test_residual_carry_adds_the_warped_edit_to_each_source_frame():
    """A global +20 brightening carried as a residual is exactly source_t + 20 whatever the motion;
    carried as pixels it is the warped first frame, which differs where content enters the view."""
    clip = translating_clip(frames=4)
    edited = np.clip(clip[0].astype(int) + 20, 0, 255).astype(np.uint8)
    residual = propagate(clip, edited, composite="never", carry="residual")
    expected = np.clip(clip.astype(int) + 20, 0, 255)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    # bilinear rounding, and pixels where +20 clipped at 255 carry a smaller residual
    assert np.abs(residual[inner].astype(int) - expected[inner]).max() <= 2
    pixels = propagate(clip, edited, composite="never", carry="pixels")
    assert np.abs(pixels.astype(int) - expected).mean() > np.abs(residual.astype(int) - expected).mean()


def test_residual_carry_keeps_unedited_pixels_exact():
    pair = make_pair(7, "val", "swap", frames=9, height=64, width=64)
    out = propagate(pair.source, pair.target[0], carry="residual")
    moved = edit_mask(pair.source[0], pair.target[0], dilate=12) == 0
    keep = np.broadcast_to(moved, pair.source.shape[:3]) & (pair.mask == 0)
    np.testing.assert_array_equal(out[keep], pair.source[keep])


def test_bad_options():
    clip = moving_pattern(frames=2, height=16, width=16)
    with pytest.raises(ValueError):
        propagate(clip, clip[0], mode="magic")
    with pytest.raises(ValueError):
        propagate(clip, clip[0], composite="sometimes")
    with pytest.raises(ValueError):
        propagate(clip, clip[0], carry="everything")


def test_propagation_streams_frame_by_frame():
    """Each output frame leaves as soon as its source frame arrives (memory: frame 0, the previous
    frame, one flow field), and the frames are those of the in-memory call."""
    from freeprop.baselines.flow_warp import propagate_frames
    from tests.test_pipeline import CountingFrames

    clip = translating_clip(8, 48, 48)
    edited = clip[0].copy()
    edited[10:30, 10:30] = (255, 0, 0)
    source, streamed = CountingFrames(clip), []
    for frame in propagate_frames(source, edited):
        assert source.read == len(streamed) + 1
        streamed.append(frame)
    np.testing.assert_array_equal(np.stack(streamed), propagate(clip, edited))
