"""benchmarks/propagation.py: a training checkpoint is scored as the model its run trains; the scores\ninside and outside the edit."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from freeprop.cli import main
from freeprop.models import build_transformer
from freeprop.pipeline import FreePropPipeline, make_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from propagation import evaluate, load_model, outside_table  # noqa: E402


def test_a_checkpoint_loads_into_the_model_its_run_started_from(tmp_path, monkeypatch):
    # a start whose transformer config differs from the bare preset's (the bundle's signed α_S range)
    start = FreePropPipeline(build_transformer("tiny", alpha_s_range="signed", predicts_residual=True),
                             make_scheduler())
    start.save_pretrained(tmp_path / "start")
    # trained from tmp_path with relative paths, scored from elsewhere (benchmarks/, say)
    run = tmp_path / "runs" / "run"
    tiny = str(Path("configs/tiny.yaml").resolve())
    monkeypatch.chdir(tmp_path)
    assert main(["train", tiny, "model.pipeline=start", "full_finetune=true",
                 "lora.enabled=false", "loss.variant=ast_rope", "data.synthetic_pairs=4", "data.num_frames=5",
                 "data.height=16", "data.width=16", "batch_size=2", "max_steps=1", "save_every=1", "optim.warmup_steps=0",
                 "output_dir=runs/run"]) == 0
    monkeypatch.chdir(run)

    pipe = load_model(str(run / "checkpoints" / "step-0000001"))
    assert pipe.transformer.config.alpha_s_range == "signed" and pipe.transformer.config.predicts_residual
    trained = load_file(str(run / "checkpoints" / "step-0000001" / "trainable.safetensors"))
    start_weights = start.transformer.state_dict()
    assert any(not torch.equal(trained[k], start_weights[k]) for k in trained)  # the step changed weights
    for name, tensor in pipe.transformer.state_dict().items():
        assert torch.equal(tensor, trained.get(name, start_weights[name])), name


def test_a_weights_file_loads_into_the_preset(tmp_path):
    """benchmarks/ablation.py --start: full weights in one file, scored as the preset they were made for."""
    from safetensors.torch import save_file

    weights = build_transformer("tiny").state_dict()
    weights = {k: torch.randn_like(v) for k, v in weights.items()}
    save_file(weights, tmp_path / "base.safetensors")
    pipe = load_model(str(tmp_path / "base.safetensors"), preset="tiny")
    assert pipe.transformer.config.alpha_s_range == "unit"
    for name, tensor in pipe.transformer.state_dict().items():
        assert torch.equal(tensor, weights[name]), name


def test_psnr_inside_and_outside_the_edit_are_scored_apart():
    from freeprop.data.synthetic import make_pair

    pair = make_pair(5, "val", "swap", frames=3, height=16, width=16)
    edited = pair.mask[..., None] > 0
    # off by 5 grey levels inside the edit, by 10 outside it: PSNR 10·log10(255² / 25) and 10·log10(255² / 100)
    scores = evaluate(lambda p: p.target.astype(np.int16) + np.where(edited, 5, 10), [pair], 1)["swap"]
    assert scores["masked_psnr"] == pytest.approx(10 * np.log10(255**2 / 25))
    assert scores["outside_psnr"] == pytest.approx(10 * np.log10(255**2 / 100))
    assert "| m | 28.13 | – | – |" in outside_table({"m": {"swap": scores}})
