import pytest
import torch
from safetensors.torch import save_file

from freeprop.errors import FreePropInputError
from freeprop.models import build_transformer
from freeprop.models.loading import load_transformer, load_weights, model_config


def test_load_preset_with_weights_is_exact(tmp_path):
    source = build_transformer("tiny")
    torch.nn.init.normal_(source.alpha_predictor.head_s.weight)
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    loaded = load_transformer("tiny", tmp_path / "w.safetensors")
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_load_diffusers_folder(tmp_path):
    model = build_transformer("tiny")
    model.save_pretrained(tmp_path / "pipe" / "transformer")
    loaded = load_transformer(tmp_path / "pipe")
    assert torch.equal(loaded.patch_embedding.weight, model.patch_embedding.weight)
    assert model_config(tmp_path / "pipe")["in_channels"] == 37


def test_strict_weights_report_every_problem(tmp_path):
    model = build_transformer("tiny")
    state = model.state_dict()
    state.pop("proj_out.bias")
    state["blocks.0.attn1.to_q.weight"] = torch.zeros(5, 5)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(FreePropInputError) as err:
        load_weights(model, tmp_path / "bad.safetensors")
    text = str(err.value)
    assert "missing keys: proj_out.bias" in text and "unexpected keys: extra.weight" in text
    assert "blocks.0.attn1.to_q.weight: checkpoint (5, 5) vs model (24, 24)" in text


def test_refuses_pickles_and_missing_files(tmp_path):
    model = build_transformer("tiny")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    with pytest.raises(FreePropInputError, match="only .safetensors"):
        load_weights(model, tmp_path / "w.pt")
    with pytest.raises(FreePropInputError, match="not found"):
        load_weights(model, tmp_path / "none.safetensors")
