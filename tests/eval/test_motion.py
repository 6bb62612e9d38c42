import numpy as np
import pytest

from freeprop.eval.metrics.motion import flow_epe, match_source, warping_error
from tests.conftest import translating_clip


def test_output_moving_like_the_source_has_zero_epe_whatever_its_colours():
    source = translating_clip(frames=6, dx=2, dy=1)
    recoloured = (255 - source).astype(np.uint8)  # same motion, other colours
    assert flow_epe(source, source) == 0.0
    assert flow_epe(recoloured, source) < 0.3
    frozen = np.repeat(source[:1], len(source), axis=0)  # no motion at all: EPE ≈ the motion, √5 px
    assert flow_epe(frozen, source) == pytest.approx(np.sqrt(5), rel=0.25)


def test_translation_warped_by_its_own_flow_has_near_zero_warping_error():
    source = translating_clip(frames=6, dx=2, dy=1)
    assert warping_error(source, source) < 1.5  # grey levels, bilinear resampling only
    shuffled = source[[0, 3, 1, 5, 2, 4]]
    assert warping_error(shuffled, source) > 5 * warping_error(source, source)


def test_outputs_of_another_size_and_length_are_matched_to_the_source():
    source = translating_clip(frames=6, height=32, width=32)
    big = np.repeat(np.repeat(source[:5], 2, axis=1), 2, axis=2)  # 2× size, one frame short
    out, src = match_source(big, source)
    assert out.shape == src.shape == (5, 32, 32, 3)
    assert flow_epe(big, source) < 0.5
