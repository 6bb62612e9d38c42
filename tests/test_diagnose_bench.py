"""benchmarks/diagnose.py: the identity measurement, by hand."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from freeprop.data.synthetic import make_pair

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from diagnose import identity_psnr  # noqa: E402


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
