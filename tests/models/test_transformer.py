import pytest
import torch
from diffusers import WanTransformer3DModel

from freeprop.models import FreePropTransformer, build_ffp_input, build_transformer, expand_input_channels
from freeprop.models.ast_rope import SPATIAL, TEMPORAL
from tests.conftest import TINY_FUN_CONTROL, TINY_PREDICTOR

TINY_WAN = TINY_FUN_CONTROL
PREDICTOR = TINY_PREDICTOR


def inputs(batch=2, channels=37, frames=5, height=8, width=12, text_len=7, text_dim=16):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(batch, channels, frames, height, width, generator=g),
        torch.tensor([500, 100][:batch]),
        torch.randn(batch, text_len, text_dim, generator=g),
    )


@pytest.fixture
def fun_control():
    return WanTransformer3DModel(**TINY_WAN).eval()


def test_expanded_model_reproduces_fun_control(fun_control):
    model = expand_input_channels(fun_control, mask_channels=1, **PREDICTOR).eval()
    assert model.config.in_channels == 37 and model.mask_channels == 1
    x, t, text = inputs()
    with torch.no_grad():
        expected = fun_control(x[:, :36], t, text).sample
        out = model(x, t, text)  # the mask channel holds random values: its weights are zero
    assert torch.equal(out.alpha_s, torch.zeros(2)) and torch.equal(out.alpha_t, torch.ones(2))
    assert (out.sample - expected).abs().max() <= 1e-5
    new_channels = model.patch_embedding.weight[:, 36:]
    assert torch.count_nonzero(new_channels) == 0


def test_expanded_model_with_image_branch():
    base = WanTransformer3DModel(**{**TINY_WAN, "image_dim": 4, "added_kv_proj_dim": 24}).eval()
    model = expand_input_channels(base, mask_channels=4, **PREDICTOR).eval()
    x, t, text = inputs(channels=40, text_len=512)  # Wan's I2V cross-attention assumes 512 text tokens
    image = torch.randn(2, 3, 4)
    with torch.no_grad():
        expected = base(x[:, :36], t, text, image).sample
        actual = model(x, t, text, image).sample
    assert (actual - expected).abs().max() <= 1e-5


def test_ast_rope_changes_output_and_switch_restores_plain_rope(fun_control):
    model = expand_input_channels(fun_control, mask_channels=1, **PREDICTOR).eval()
    x, t, text = inputs()
    with torch.no_grad():
        plain = fun_control(x[:, :36], t, text).sample
        moved = model(x, t, text, alphas=(torch.tensor([0.5, -0.3]), torch.tensor([2.0, 0.7]))).sample
        assert (moved - plain).abs().max() > 1e-3
        # Perturb the predictor, then turn AST-RoPE off: plain Wan RoPE again (the Baseline ablation).
        torch.nn.init.normal_(model.alpha_predictor.head_s.weight)
        torch.nn.init.normal_(model.alpha_predictor.head_t.weight)
        assert (model(x, t, text).sample - plain).abs().max() > 1e-3
        model.set_ast_rope(False)
        assert (model(x, t, text).sample - plain).abs().max() <= 1e-5


def test_head_map_selects_per_head_rope(fun_control):
    """With all heads spatial, α_T has no effect; with all heads temporal, α_S has none."""
    model = expand_input_channels(fun_control, mask_channels=1, **PREDICTOR).eval()
    x, t, text = inputs(batch=1)
    one = torch.ones(1)
    model.set_head_map({"0": ["spatial", "spatial"], "1": ["spatial", "spatial"]})
    assert model.head_types.tolist() == [[SPATIAL, SPATIAL]] * 2
    with torch.no_grad():
        a = model(x, t[:1], text, alphas=(0.5 * one, 1.0 * one)).sample
        b = model(x, t[:1], text, alphas=(0.5 * one, 3.0 * one)).sample
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        model.set_head_map({"0": ["temporal", "temporal"], "1": ["temporal", "temporal"]})
        c = model(x, t[:1], text, alphas=(0.0 * one, 3.0 * one)).sample
        d = model(x, t[:1], text, alphas=(0.9 * one, 3.0 * one)).sample
        torch.testing.assert_close(c, d, rtol=0, atol=0)
        assert (a - c).abs().max() > 1e-4
    assert model.config.head_map["0"] == ["temporal", "temporal"]


def test_gradients_reach_predictor_and_checkpointing_matches():
    model = build_transformer("tiny")
    torch.nn.init.normal_(model.alpha_predictor.head_s.weight, std=0.1)
    torch.nn.init.normal_(model.alpha_predictor.head_t.weight, std=0.1)
    x, t, text = inputs()

    def grads():
        model.zero_grad()
        out = model(x, t, text, return_features=[0])
        (out.sample.square().mean() + out.features[0].mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    for name in (
        "alpha_predictor.head_s.weight",
        "alpha_predictor.head_t.weight",
        "alpha_predictor.proj_in.weight",
    ):
        assert plain[name].abs().sum() > 0, name
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


def test_features_are_block_outputs():
    model = build_transformer("tiny").eval()
    x, t, text = inputs()
    with torch.no_grad():
        out = model(x, t, text, return_features=[1])
        sample, features = model(x, t, text, return_features=[1], return_dict=False)
    assert set(out.features) == {1} and out.features[1].shape == (2, 5 * 4 * 6, 24)
    torch.testing.assert_close(features[1], out.features[1])
    torch.testing.assert_close(sample, out.sample)
    with torch.no_grad():
        early = model(x, t, text, return_features=[0], features_only=True)  # stops after block 0
        torch.testing.assert_close(early.features[0], model(x, t, text, return_features=[0]).features[0])
    assert early.sample is None and set(early.features) == {0}


def test_save_and_load_round_trip(tmp_path):
    model = build_transformer("tiny", use_ast_rope=True).eval()
    torch.nn.init.normal_(model.alpha_predictor.head_t.weight)
    model.set_head_map({"0": ["temporal", "spatial"], "1": ["spatial", "spatial"]})
    model.save_pretrained(tmp_path)
    loaded = FreePropTransformer.from_pretrained(tmp_path).eval()
    assert loaded.head_types.tolist() == [[TEMPORAL, SPATIAL], [SPATIAL, SPATIAL]]
    x, t, text = inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, text).sample, model(x, t, text).sample, rtol=1e-5, atol=1e-6)


def test_attention_backend_switch_keeps_results():
    model = build_transformer("tiny").eval()
    torch.nn.init.normal_(model.alpha_predictor.head_s.weight)
    x, t, text = inputs()
    with torch.no_grad():
        native = model(x, t, text).sample
        model.set_attention_backend("_native_math")
        assert model.blocks[0].attn1.processor._attention_backend is not None
        math_backend = model(x, t, text).sample
    torch.testing.assert_close(math_backend, native, atol=1e-5, rtol=1e-5)


def test_lora_adapter_through_diffusers_api():
    from peft import LoraConfig

    model = build_transformer("tiny").eval()
    x, t, text = inputs()
    with torch.no_grad():
        before = model(x, t, text).sample
    model.add_adapter(
        LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
    )
    with torch.no_grad():
        after = model(x, t, text).sample
    assert (after - before).abs().max() > 1e-4
    assert isinstance(model.blocks[0].attn1.processor, type(model.blocks[1].attn1.processor))


def test_build_ffp_input_layout():
    noisy, source = torch.full((1, 2, 3, 2, 2), 1.0), torch.full((1, 2, 3, 2, 2), 2.0)
    first = torch.full((1, 2, 1, 2, 2), 3.0)
    x = build_ffp_input(noisy, source, first, mask_channels=4)
    assert x.shape == (1, 2 + 2 + 2 + 4, 3, 2, 2)
    assert x[:, :2].eq(1).all() and x[:, 2:4].eq(2).all()
    assert x[:, 4:6, 0].eq(3).all() and x[:, 4:6, 1:].eq(0).all()  # ẑ zero-padded in time
    assert x[:, 6:, 0].eq(1).all() and x[:, 6:, 1:].eq(0).all()  # M marks latent frame 0
    assert build_ffp_input(noisy, source, first[:, :, 0], mask_channels=0).shape[1] == 6
    with pytest.raises(ValueError, match="disagree"):
        build_ffp_input(noisy, source[:, :, :2], first, 4)


def test_rejects_too_few_input_channels():
    with pytest.raises(ValueError, match="3·out_channels"):
        FreePropTransformer(**{**TINY_WAN, "in_channels": 30})
    with pytest.raises(ValueError, match="Fun-Control"):
        expand_input_channels(WanTransformer3DModel(**{**TINY_WAN, "in_channels": 37}))
