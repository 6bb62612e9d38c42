"""scripts/mix_weights.py: Σ wᵢ·θᵢ over real pipelines' transformers, written as a run bundle_model.py takes."""

import json
import runpy
import sys
from pathlib import Path

import torch

from freeprop import FreePropPipeline
from freeprop.models import build_transformer
from freeprop.pipeline import make_scheduler

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args, monkeypatch, capsys) -> tuple[int, str]:
    """Run scripts/NAME as `python scripts/NAME ARGS...` does, in this process: (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", [name, *map(str, args)])
    try:
        runpy.run_path(str(ROOT / "scripts" / name), run_name="__main__")
        code = 0
    except SystemExit as done:
        code = done.code or 0
    return code, capsys.readouterr().err


def save_pipeline(folder: Path, seed: int, **overrides) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    pipe = FreePropPipeline(
        build_transformer("tiny", **overrides), make_scheduler(), identity_correction=0.25 * seed
    )
    pipe.save_pretrained(folder)
    return pipe.transformer.state_dict()


def test_weights_are_mixed_by_hand_and_bundle(tmp_path, monkeypatch, capsys):
    run_a = tmp_path / "run_a"
    state_a = save_pipeline(run_a / "pipeline", seed=1)
    config = {"data": {"height": 16, "width": 16, "num_frames": 5}}
    (run_a / "config.json").write_text(json.dumps(config))
    (run_a / "summary.json").write_text("{}")
    state_b = save_pipeline(tmp_path / "pipe_b", seed=2)  # a bare pipeline folder
    assert any(not torch.equal(state_a[k], state_b[k]) for k in state_a)

    code, err = script(
        "mix_weights.py",
        tmp_path / "mixed",
        f"{run_a}=1.5",
        f"{tmp_path / 'pipe_b'}=-0.5",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0, err
    mixed = FreePropPipeline.from_pretrained(tmp_path / "mixed" / "pipeline", torch_dtype=torch.float32)
    for name, tensor in mixed.transformer.state_dict().items():  # an extrapolation: 1.5·a − 0.5·b
        torch.testing.assert_close(tensor, 1.5 * state_a[name] - 0.5 * state_b[name], rtol=0, atol=1e-6)
    assert mixed.identity_correction == 0.25  # the first run's sampling
    assert json.loads((tmp_path / "mixed" / "config.json").read_text()) == config
    assert list(json.loads((tmp_path / "mixed" / "mixed_from.json").read_text()).values()) == [1.5, -0.5]

    code, err = script(
        "bundle_model.py",
        tmp_path / "mixed",
        "--out",
        tmp_path / "pack",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0, err
    packed = FreePropPipeline.from_pretrained(tmp_path / "pack")
    provenance = json.loads((tmp_path / "pack" / "training_mixed_from.json").read_text())
    assert list(provenance.values()) == [1.5, -0.5]  # the pack says what it was mixed from
    name = next(
        k
        for k, v in state_a.items()
        if v.dtype == torch.float32 and "alpha_predictor" not in k and v.ndim == 2
    )
    torch.testing.assert_close(
        packed.transformer.state_dict()[name].float(),
        1.5 * state_a[name] - 0.5 * state_b[name],
        rtol=1e-3,
        atol=1e-3,
    )  # fp16


def test_bad_mixes_get_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    run_a = tmp_path / "run_a"
    save_pipeline(run_a / "pipeline", seed=1)
    (run_a / "config.json").write_text("{}")
    save_pipeline(tmp_path / "other", seed=2, num_layers=1)
    cases = {
        "sum to 0.9": [f"{run_a}=0.5", f"{run_a}=0.4"],
        "RUN=WEIGHT": [f"{run_a}=half"],
        "another architecture": [f"{run_a}=0.5", f"{tmp_path / 'other'}=0.5"],
        "neither a run folder": [f"{run_a}=0.5", f"{tmp_path / 'nowhere'}=0.5"],
        "must be a run folder": [f"{tmp_path / 'other'}=1"],
    }
    for expected, sources in cases.items():
        code, err = script(
            "mix_weights.py", tmp_path / "out", *sources, monkeypatch=monkeypatch, capsys=capsys
        )
        assert code == 2 and expected in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    code, err = script(
        "mix_weights.py", tmp_path / "out", f"{run_a}=1", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "exists" in err and not any((tmp_path / "out").iterdir())


def test_bundle_model_rejects_a_folder_that_is_not_a_run(tmp_path, monkeypatch, capsys):
    save_pipeline(tmp_path / "bare", seed=1)  # a pipeline folder, not a run: no config.json, no pipeline/
    code, err = script(
        "bundle_model.py", tmp_path / "bare", "--out", tmp_path / "pack", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2 and "config.json" in err and err.count("\n") == 1, err
    assert not (tmp_path / "pack").exists()
