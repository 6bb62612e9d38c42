"""benchmarks/ablation.py: the table's statistics, computed by hand."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ablation import format_table, paired_gain, summarise  # noqa: E402


def scores(psnr: float, alpha_t: float = 1.0) -> dict:
    return {"mean": {"psnr": psnr}, "alpha": {"alpha_s": 0.0, "alpha_t": alpha_t}}


def test_paired_gain_cancels_each_seeds_luck():
    baseline = {0: scores(27.6), 1: scores(28.0)}
    arm = {0: scores(27.7), 1: scores(28.2), 2: scores(30.0)}  # seed 2 has no baseline run: left out
    mean, spread = paired_gain(arm, baseline)
    assert mean == pytest.approx(0.15) and spread == pytest.approx(0.05)
    assert paired_gain({None: scores(27.0)}, baseline) is None  # the start has no seed


def test_summary_and_table():
    arms = {"baseline": {0: scores(27.6), 1: scores(28.0)}, "ast_rope": {0: scores(27.7, 0.5), 1: scores(28.2, 0.3)}}
    summaries = {arm: summarise(list(runs.values())) for arm, runs in arms.items()}
    assert summaries["ast_rope"]["mean"]["psnr"] == pytest.approx((27.95, 0.25))
    assert summaries["ast_rope"]["alpha"]["alpha_t"] == pytest.approx((0.4, 0.1))
    assert summarise([scores(27.0)])["mean"]["psnr"] == (27.0, None)  # one run: no spread
    copy = {"mean": {t: {"psnr": 20.0} for t in ("swap", "removal", "modification", "stylization", "mean")}}
    for task in ("swap", "removal", "modification", "stylization"):
        for runs in arms.values():
            for run in runs.values():
                run[task] = {"psnr": 25.0, "flicker_ratio": 1.0}
    summaries = {arm: summarise(list(runs.values())) for arm, runs in arms.items()}
    rows = format_table({"copy-source": copy}, arms, summaries).splitlines()
    assert rows[4].startswith("| ast_rope | 2 |") and "| 27.95 ± 0.25 | +0.15 ± 0.05 | 0.00 ± 0.00 / 0.40 ± 0.10 |" in rows[4]
    assert rows[3].startswith("| baseline | 2 |") and "| 27.80 ± 0.20 | – |" in rows[3]  # the baseline: no gain over itself
