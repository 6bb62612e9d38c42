import pytest
import torch
from safetensors.torch import save_file

from freeprop.errors import FreePropInputError
from freeprop.models import build_transformer
from freeprop.models.loading import load_transformer, load_weights, model_config
from tests.conftest import TINY_FUN_CONTROL, TINY_PREDICTOR


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


# --- original Wan2.1 Fun-Control checkpoints ---------------------------------------------------

FUN_CONTROL_TINY = {**TINY_FUN_CONTROL, "image_dim": 4, "added_kv_proj_dim": 24}  # with the CLIP image branch
PREDICTOR = TINY_PREDICTOR


def to_original_wan_keys(state: dict) -> dict:
    """Write a diffusers Wan state dict in the original Wan / VideoX-Fun key layout (hand-made inverse)."""
    top = {
        "condition_embedder.time_embedder.linear_1": "time_embedding.0",
        "condition_embedder.time_embedder.linear_2": "time_embedding.2",
        "condition_embedder.text_embedder.linear_1": "text_embedding.0",
        "condition_embedder.text_embedder.linear_2": "text_embedding.2",
        "condition_embedder.time_proj": "time_projection.1",
        "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
        "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
        "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
        "condition_embedder.image_embedder.norm2": "img_emb.proj.4",
        "proj_out": "head.head",
        "scale_shift_table": "head.modulation",
    }
    first = {
        "attn1": "self_attn",
        "attn2": "cross_attn",
        "norm2": "norm3",
        "norm3": "norm2",
        "scale_shift_table": "modulation",
    }  # Wan orders its norms norm1, norm3 (cross-attn), norm2
    attn = {
        "to_q": "q",
        "to_k": "k",
        "to_v": "v",
        "add_k_proj": "k_img",
        "add_v_proj": "v_img",
        "norm_added_k": "norm_k_img",
    }
    out = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            rest = (
                rest.replace("to_out.0.", "o.")
                .replace("ffn.net.0.proj.", "ffn.0.")
                .replace("ffn.net.2.", "ffn.2.")
            )
            parts = rest.split(".")
            parts[0] = first.get(parts[0], parts[0])
            if len(parts) > 2:
                parts[1] = attn.get(parts[1], parts[1])
            out[f"blocks.{index}." + ".".join(parts)] = value
        else:
            name, _, leaf = key.rpartition(".")
            out[f"{top.get(name, name)}.{leaf}" if name else top.get(key, key)] = value
    return out


def test_original_layout_fun_control_loads_and_matches(tmp_path):
    from diffusers import WanTransformer3DModel

    from freeprop.models import expand_input_channels
    from freeprop.models.loading import is_original_wan_layout, load_fun_control

    base = WanTransformer3DModel(**FUN_CONTROL_TINY).eval()
    original = to_original_wan_keys(base.state_dict())
    assert (
        "blocks.0.self_attn.q.weight" in original and "blocks.1.norm3.weight" in original
    )  # cross-attn norm
    assert "head.modulation" in original and "img_emb.proj.1.weight" in original
    assert is_original_wan_layout(original) and not is_original_wan_layout(base.state_dict())
    shards = tmp_path / "fun_control"
    shards.mkdir()
    keys = sorted(original)
    save_file(
        {k: original[k] for k in keys[: len(keys) // 2]},
        shards / "diffusion_pytorch_model-00001-of-00002.safetensors",
    )
    save_file(
        {k: original[k] for k in keys[len(keys) // 2 :]},
        shards / "diffusion_pytorch_model-00002-of-00002.safetensors",
    )

    from_original = load_fun_control(shards, mask_channels=4, head_dim=12, **PREDICTOR).eval()
    save_file(base.state_dict(), tmp_path / "diffusers_layout.safetensors")
    from_diffusers = load_fun_control(
        tmp_path / "diffusers_layout.safetensors", mask_channels=4, head_dim=12, **PREDICTOR
    ).eval()
    reference = expand_input_channels(base, mask_channels=4, **PREDICTOR).eval()

    x, t = torch.randn(1, 40, 3, 4, 4), torch.tensor([700])
    text, image = torch.randn(1, 512, 16), torch.randn(1, 3, 4)
    with torch.no_grad():
        expected = base(x[:, :36], t, text, image).sample
        for model in (from_original, from_diffusers, reference):
            assert (model(x, t, text, image).sample - expected).abs().max() <= 1e-5


def test_fun_control_errors(tmp_path):
    from diffusers import WanTransformer3DModel

    from freeprop.models.loading import load_fun_control

    state = WanTransformer3DModel(**FUN_CONTROL_TINY).state_dict()
    state.pop("blocks.1.ffn.net.2.bias")
    save_file(state, tmp_path / "broken.safetensors")
    with pytest.raises(FreePropInputError, match="missing keys: blocks.1.ffn.net.2.bias"):
        load_fun_control(tmp_path / "broken.safetensors", head_dim=12)
    t2v = WanTransformer3DModel(
        **{**FUN_CONTROL_TINY, "in_channels": 12, "image_dim": None, "added_kv_proj_dim": None}
    )
    save_file(t2v.state_dict(), tmp_path / "t2v.safetensors")
    with pytest.raises(FreePropInputError, match="Fun-Control checkpoint has 3x12"):
        load_fun_control(tmp_path / "t2v.safetensors", head_dim=12)
    save_file({"foo": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(FreePropInputError, match="not a Wan transformer"):
        load_fun_control(tmp_path / "other.safetensors")


def test_freeprop_weights_are_not_mistaken_for_fun_control(tmp_path):
    """An AlphaPredictor has `self_attn` keys too; a FreeProp checkpoint must load as FreeProp."""
    from freeprop.models.loading import is_original_wan_layout
    from freeprop.pipeline import load_pipeline

    model = build_transformer("tiny")
    torch.nn.init.normal_(model.alpha_predictor.head_s.weight)
    assert not is_original_wan_layout(model.state_dict())
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    pipe = load_pipeline("tiny", tmp_path / "w.safetensors")
    assert torch.equal(pipe.transformer.alpha_predictor.head_s.weight, model.alpha_predictor.head_s.weight)


def test_fun_control_v1_1_is_refused_by_name(tmp_path):
    from diffusers import WanTransformer3DModel

    from freeprop.models.loading import load_fun_control

    state = WanTransformer3DModel(**FUN_CONTROL_TINY).state_dict()
    state["ref_conv.weight"] = torch.zeros(24, 12, 2, 2)
    save_file(state, tmp_path / "v11.safetensors")
    with pytest.raises(FreePropInputError, match="V1.1 checkpoint .* use a Wan2.1-Fun-\\*-Control V1.0"):
        load_fun_control(tmp_path / "v11.safetensors", head_dim=12)
