"""benchmarks/diagnose.py: the identity measurement, by hand."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from freeprop.data.synthetic import make_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from diagnose import edit_speed, identity_psnr  # noqa: E402


def test_identity_psnr_scores_what_a_model_changes_without_an_edit():
    pairs = [make_pair(s, "val", "swap", frames=3, height=16, width=16) for s in (1, 2)]
    calls = []

    def pipe(source, first, generator):  # a model that adds 10 grey levels to every frame but frame 0
        calls.append(np.array_equal(first, source[0]))
        out = source.astype(np.int16) + 10
        out[0] = source[0]
        return SimpleNamespace(frames=out)

    assert identity_psnr(pipe, pairs) == pytest.approx(10 * np.log10(255**2 / 100))
    assert calls == [True, True]  # it is given the unedited first frame


def test_edit_speed_follows_the_mask_centroid():
    mask = np.zeros((4, 20, 20), np.uint8)
    mask[0, 2:4, 2:4] = 255  # centroid (2.5, 2.5)
    mask[1, 5:7, 6:8] = 255  # (5.5, 6.5): moved 5 px
    mask[3, 5:7, 6:8] = 255  # frame 2 has no mask: 1 → 3 is not a step between consecutive frames
    assert edit_speed(mask) == pytest.approx(5.0)
    assert np.isnan(edit_speed(np.zeros((3, 4, 4))))


def test_sensitivity_by_speed_pairs_each_edit_with_its_speed(monkeypatch):
    import diagnose

    speeds = {"a": 0.2, "b": 1.0, "c": 3.0, "d": 2.5}
    carried = {"a": 0.8, "b": 0.5, "c": 0.1, "d": 0.3}
    pairs = [SimpleNamespace(name=n, mask=n) for n in speeds]
    monkeypatch.setattr(diagnose, "edit_speed", lambda mask: speeds[mask])
    monkeypatch.setattr(diagnose, "pair_sensitivity", lambda pipe, pair, steps: carried[pair.name])
    result = diagnose.sensitivity_by_speed(None, pairs)
    assert result["pairs"] == 4 and result["sensitivity_slow"] == pytest.approx(0.8)
    assert result["sensitivity_fast"] == pytest.approx(0.2)  # c and d
    assert result["correlation"] == pytest.approx(np.corrcoef([0.8, 0.5, 0.1, 0.3], [0.2, 1.0, 3.0, 2.5])[0, 1])
    assert result["mean_speed"] == pytest.approx(1.675)
