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


def test_by_frame_follows_a_fading_edit(monkeypatch):
    """A model that carries the first-frame edit at weight 0.5, 0.9, 0.5, 0.25 on frames 0 to 3 (and
    nothing else), on pairs whose truth adds the same edit of 30 grey levels to every frame: the per-frame
    sensitivity is those weights, the masked PSNR that of an error of (1 − weight)·30; a frame whose mask
    is too small is left out of its average. Flow-warp is replaced by a method that carries half the edit."""
    import diagnose

    weights = np.array([0.5, 0.9, 0.5, 0.25])

    def pipe(source, first, num_inference_steps, replace_first_frame, generator):
        edit = first.astype(np.float32) - source[0]
        return SimpleNamespace(frames=source + weights[:, None, None, None] * edit)

    monkeypatch.setattr(diagnose, "propagate", lambda source, first: source + 0.5 * (first - source[0]))
    rng = np.random.default_rng(0)
    pairs = []
    for leaving in (False, True):
        source = rng.uniform(40, 200, (4, 8, 8, 3)).astype(np.float32)
        mask = np.zeros((4, 8, 8), np.uint8)
        mask[:, 2:6, 2:6] = 255
        target = source + 30.0 * (mask[..., None] > 0)
        if leaving:  # at t = 3 only 4 pixels of this pair's edit are left, changed twice as much (0.125 carried)
            mask[3] = 0
            mask[3, 2:4, 2:4] = 255
            target[3] = source[3] + 60.0 * (mask[3, ..., None] > 0)
        pairs.append(SimpleNamespace(source=source, target=target, mask=mask))
    result = diagnose.by_frame(pipe, pairs)

    def psnr_of(error):
        return 10 * np.log10(255**2 / error**2)

    assert result["sensitivity"] == pytest.approx([0.9, 0.5, 0.25])
    assert result["masked_psnr_model"] == pytest.approx([psnr_of((1 - w) * 30) for w in weights])
    assert result["masked_psnr_flow-warp"] == pytest.approx([psnr_of(15)] * 4)
    assert result["masked_psnr_copy-source"] == pytest.approx([psnr_of(30)] * 4)
    assert diagnose.pair_sensitivity(pipe, pairs[0], None) == pytest.approx(np.mean([0.9, 0.5, 0.25]))


def test_a_wrong_model_path_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    import diagnose

    from freeprop.errors import run_script

    monkeypatch.setattr(sys, "argv", ["diagnose.py", str(tmp_path / "missing"), "--steps", "1"])
    assert run_script(diagnose.main, "diagnose.py") == 2
    err = capsys.readouterr().err
    assert err.startswith("diagnose.py: error: ") and "missing" in err and err.count("\n") == 1

    monkeypatch.setattr(sys, "argv", ["diagnose.py", str(tmp_path), "--by-frame", "--frames", "1"])
    assert run_script(diagnose.main, "diagnose.py") == 2  # before any model is loaded
    err = capsys.readouterr().err
    assert "--frames 1" in err and err.count("\n") == 1

    def broken():  # a bug, not a user error, keeps its traceback
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        run_script(broken, "diagnose.py")


def test_embedding_readout_reads_the_edit_only_where_the_embedding_keeps_it():
    """A patch embedding that copies z_src and ẑ lets a linear read-out recover ẑ − z_src (up to the ridge
    term); one that drops ẑ leaves only what z_src predicts of the edit."""
    import diagnose
    import torch

    from freeprop.codecs import PixelCodec

    codec, channels, patch = PixelCodec(2), 12, 2
    pairs = [make_pair(s, "val", t, frames=3, height=32, width=32) for s in range(6) for t in ("swap", "modification")]

    def pipe_keeping(keep_first: bool):
        embed = torch.nn.Conv3d(3 * channels + 1, 2 * channels * patch * patch, (1, patch, patch), (1, patch, patch),
                                bias=False)
        weight = torch.zeros_like(embed.weight)
        kept = list(range(channels, 3 * channels if keep_first else 2 * channels))  # z_src (and ẑ) channels
        for out, (c, i, j) in enumerate((c, i, j) for c in kept for i in range(patch) for j in range(patch)):
            weight[out, c, 0, i, j] = 1.0
        embed.weight.data = weight
        config = SimpleNamespace(patch_size=(1, patch, patch))
        return SimpleNamespace(codec=codec, transformer=SimpleNamespace(patch_embedding=embed, mask_channels=1,
                                                                        config=config))

    kept = diagnose.embedding_readout_psnr(pipe_keeping(True), pairs[:8], pairs[8:])
    dropped = diagnose.embedding_readout_psnr(pipe_keeping(False), pairs[:8], pairs[8:])
    assert kept > 45 and dropped < 30, (kept, dropped)
