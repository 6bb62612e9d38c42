import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

from freeprop import FreePropPipeline
from freeprop.errors import FreePropInputError
from freeprop.models import build_transformer
from freeprop.pipeline import edited_share, gated_correction, make_scheduler, save_adapter, window_starts
from tests.conftest import moving_pattern


def tiny_pipeline(**kwargs) -> FreePropPipeline:
    torch.manual_seed(0)
    transformer = build_transformer("tiny").eval()
    torch.nn.init.normal_(transformer.alpha_predictor.head_s.weight, std=0.5)  # make AST-RoPE do something
    torch.nn.init.constant_(transformer.alpha_predictor.head_s.bias, 0.5)  # α_S > 0 (α_S ∈ [0, 1) clamps at 0)
    return FreePropPipeline(transformer, make_scheduler("unipc"), **kwargs)


def run(pipe, clip, edit, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", 3)
    return pipe(clip, edit, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.fixture(scope="module")
def clip():
    return moving_pattern(frames=17, height=32, width=48)


def test_deterministic_for_fixed_generator(clip):
    pipe = tiny_pipeline()
    edit = 255 - clip[0]
    a, b, c = run(pipe, clip, edit), run(pipe, clip, edit), run(pipe, clip, edit, seed=1)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.abs(a.frames[1:].astype(int) - c.frames[1:]).max() > 0
    assert a.frames.shape == clip.shape and a.frames.dtype == np.uint8
    assert len(a.alphas) == 1 and a.alphas[0][0] != 0.0  # α_S from the (perturbed) predictor
    assert set(a.timings) == {"resize", "encode", "denoise", "decode"} and min(a.timings.values()) >= 0


def test_first_frame_consistency(clip):
    """Frame 0 is the user's edit exactly when re-imposed; without, the pixel codec keeps it close."""
    pipe = tiny_pipeline()
    edit = 255 - clip[0]
    imposed = run(pipe, clip, edit).frames
    np.testing.assert_array_equal(imposed[0], edit)
    raw = run(pipe, clip, edit, replace_first_frame=False).frames
    np.testing.assert_array_equal(raw[1:], imposed[1:])  # only frame 0 differs
    assert raw[0].shape == edit.shape


def test_maps_back_to_user_size_and_frame_count():
    pipe = tiny_pipeline()
    clip = moving_pattern(frames=23, height=30, width=46)  # sizes not multiples of the model stride
    edit = clip[0]
    out = run(pipe, clip, edit, num_frames=20, num_inference_steps=2)
    assert out.frames.shape == (20, 30, 46, 3)
    assert run(pipe, clip, edit, height=60, width=92, num_inference_steps=2).frames.shape == (23, 60, 92, 3)
    pil = run(pipe, clip, edit, output_type="pil", num_inference_steps=1).frames
    assert len(pil) == 23 and pil[0].size == (46, 30)
    pt = run(pipe, clip, edit, output_type="pt", num_inference_steps=1).frames
    assert pt.shape == (23, 3, 30, 46) and pt.min() >= 0 and pt.max() <= 1


def test_window_starts_cover_the_video():
    assert window_starts(17, 17, 1) == [0]
    assert window_starts(41, 17, 1) == [0, 16, 32]  # windows end at 16, 32, 48 ≥ 40
    assert window_starts(40, 17, 5) == [0, 12, 24]
    with pytest.raises(FreePropInputError):
        window_starts(40, 17, 17)


def test_long_video_in_three_windows_has_no_large_seam():
    pipe = tiny_pipeline()
    clip = moving_pattern(frames=41, height=32, width=32, speed=1)
    edit = clip[0]
    out = run(pipe, clip, edit, window_frames=17, overlap=3, num_inference_steps=2)
    assert out.frames.shape == (41, 32, 32, 3) and len(out.alphas) == 3
    diffs = np.abs(np.diff(out.frames.astype(np.float32), axis=0)).mean(
        axis=(1, 2, 3)
    )  # diffs[i] = |f(i+1) − f(i)|
    starts = window_starts(41, 17, 3)
    seam = [
        diffs[s + 3 - 1] for s in starts[1:]
    ]  # last cross-faded frame → first frame owned by the new window
    within = [d for i, d in enumerate(diffs) if i + 1 not in {s + o for s in starts[1:] for o in range(4)}]
    assert max(seam) <= max(within)


def test_vae_pipeline_and_save_load_round_trip(tmp_path):
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()
    transformer = build_transformer("tiny", latent_channels=16, mask_channels=4).eval()
    pipe = FreePropPipeline(transformer, make_scheduler("euler", shift=3.0), vae=vae, window_frames=9)
    clip = moving_pattern(frames=11, height=40, width=40)  # 11 frames → padded to 13 = 4·3+1, size → 32x32
    out = run(pipe, clip, clip[0], num_inference_steps=2)
    assert out.frames.shape == (11, 40, 40, 3)
    assert pipe.size_multiple == 16 and pipe.model_size(40, 40) == (32, 32)

    pipe.save_pretrained(tmp_path / "pipe")
    loaded = FreePropPipeline.from_pretrained(tmp_path / "pipe")
    assert (
        type(loaded.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
        and loaded.config.window_frames == 9
    )
    again = run(loaded, clip, clip[0], num_inference_steps=2).frames.astype(int)
    # same weights, same output up to float rounding (the loaded tensors' memory layout can pick another
    # BLAS path: ~4e-7 in the transformer, which may flip a pixel's rounding)
    assert np.abs(again - out.frames).max() <= 1 and (again != out.frames).mean() < 1e-3


def test_strict_folder_loading(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    weights = tmp_path / "pipe" / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("proj_out.bias")
    save_file(state, weights)
    with pytest.raises(FreePropInputError, match="missing keys: proj_out.bias"):
        FreePropPipeline.from_pretrained(tmp_path / "pipe")
    with pytest.raises(FreePropInputError, match="no model_index.json"):
        FreePropPipeline.from_pretrained(tmp_path)


def test_prompt_with_text_encoder_and_cfg(clip):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "a", "red", "car", "blue", "sky"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=8, d_model=16, d_kv=4, num_heads=2, num_layers=1, d_ff=32)
    ).eval()
    pipe = tiny_pipeline()
    pipe.register_modules(text_encoder=encoder, tokenizer=tokenizer)

    embeds = pipe.encode_prompt(["a red car", "sky"], "cpu")
    assert embeds.shape == (2, 512, 16)
    assert embeds[0, 3:].abs().max() == 0 and embeds[1, 1:].abs().max() == 0  # zero past each prompt

    edit = clip[0]
    plain = run(pipe, clip, edit).frames
    guided = run(pipe, clip, edit, prompt="a red car", guidance_scale=5.0).frames
    unguided = run(pipe, clip, edit, prompt="a red car", guidance_scale=1.0).frames
    assert np.abs(guided.astype(int) - unguided).max() > 0 and np.abs(unguided.astype(int) - plain).max() > 0


def test_clip_image_branch(clip):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=4,
            intermediate_size=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
    ).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformer = build_transformer("tiny", image_dim=4).eval()
    pipe = FreePropPipeline(
        transformer, make_scheduler("unipc"), image_encoder=encoder, image_processor=processor
    )
    tokens = pipe.encode_image(clip[0], "cpu")
    assert tokens.shape == (1, 17, 4)  # (32/8)² patches + CLS, penultimate layer
    out = run(pipe, clip, clip[0], num_inference_steps=2)
    assert out.frames.shape == clip.shape


def test_lora_adapter_loads_and_changes_output(tmp_path, clip):
    from peft import LoraConfig

    pipe = tiny_pipeline()
    edit = clip[0]
    before = run(pipe, clip, edit).frames

    trained = tiny_pipeline()
    trained.transformer.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=16,  # alpha ≠ rank: the metadata must carry it (diffusers' fallback is alpha = rank)
            init_lora_weights=False,
            target_modules=["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj"],
        )
    )
    torch.nn.init.normal_(trained.transformer.alpha_predictor.head_t.weight, std=0.5)
    layers, heads = trained.transformer.config.num_layers, trained.transformer.config.num_attention_heads
    classified = {str(i): ["temporal"] * heads for i in range(layers)}  # not the even/odd default
    trained.transformer.set_head_map(classified)
    expected = run(trained, clip, edit).frames
    save_adapter(tmp_path / "adapter", trained.transformer)

    pipe.load_adapter(tmp_path / "adapter")
    assert pipe.transformer.config.head_map == classified
    after = run(pipe, clip, edit).frames
    assert np.abs(after.astype(int) - before).max() > 0
    np.testing.assert_array_equal(after, expected)

    default_map = {str(i): ["spatial", "temporal"] * (heads // 2) for i in range(layers)}
    overridden = tiny_pipeline()
    overridden.load_adapter(tmp_path / "adapter", head_map=default_map)
    assert overridden.transformer.config.head_map == default_map

    fused = tiny_pipeline()
    fused.load_adapter(tmp_path / "adapter", fuse=True)
    assert np.abs(run(fused, clip, edit).frames.astype(int) - expected).max() <= 1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(first_frame=np.zeros((32, 32, 3), np.uint8)), "aspect"),
        (dict(num_frames=99), "has 17"),
        (dict(output_type="gif"), "output_type"),
        (dict(prompt="hello"), "no text encoder"),
        (dict(window_frames=17, overlap=0), "overlap"),
        (dict(num_samples=-1), "num_samples must be at least 1"),
        (dict(identity_correction=1.5), r"identity correction must be in \[0, 1\]"),
    ],
)
def test_bad_inputs(kwargs, message, clip):
    pipe = tiny_pipeline()
    first = kwargs.pop("first_frame", clip[0])
    with pytest.raises(FreePropInputError, match=message):
        run(pipe, clip, first, num_inference_steps=1, **kwargs)
    with pytest.raises(FreePropInputError, match="uint8"):
        run(pipe, clip.astype(np.float32), clip[0], num_inference_steps=1)


def test_residual_upscale_keeps_source_detail_where_nothing_changes():
    """2× output: unedited regions come from the full-resolution source, not from an upsampled output."""
    from freeprop.eval.metrics.ground_truth import psnr

    source = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)  # full of fine detail
    kwargs = dict(num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    # A model whose output is exactly its (model-size) input: the edit changes nothing anywhere.
    identity = tiny_pipeline(sample_size=(32, 32))
    identity._denoise_window = lambda window, *args, **kw: (window, (0.0, 1.0))
    residual = identity(source, source[0], **kwargs).frames
    np.testing.assert_array_equal(residual, source)  # residual 0 → the full-resolution source itself
    plain = identity(source, source[0], residual_upscale=False, **kwargs).frames
    assert psnr(plain[1:], source[1:]) < 20  # upsampling the 32×32 output loses the detail
    real = tiny_pipeline(sample_size=(32, 32))(source, source[0], **kwargs).frames
    assert real.shape == source.shape


@pytest.mark.parametrize("residual, prediction", [(False, "velocity"), (True, "velocity"), (True, "sample")])
@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
def test_sampler_conventions_with_an_oracle_velocity(scheduler, residual, prediction, clip):
    """If the model predicted the true velocity v = (x_t − x₀)/σ, sampling must return x₀ (the target).

    Checks the flow-matching conventions end to end: timestep = 1000·σ, the sign of v, the scheduler
    step, and the codec round trip (straight paths make Euler exact; UniPC is close).
    """
    from freeprop.codecs import PixelCodec
    from freeprop.video import to_tensor

    transformer = build_transformer("tiny", predicts_residual=residual, prediction=prediction).eval()
    pipe = FreePropPipeline(transformer, make_scheduler(scheduler, shift=3.0))
    target = 255 - clip  # any video
    codec = PixelCodec(2)
    # a residual model's flow generates z_tgt − z_src; the pipeline adds z_src back
    x0 = transformer.target_latents(
        codec.encode(to_tensor(target)[None]), codec.encode(to_tensor(clip)[None])
    )
    channels = x0.shape[1]

    class Oracle:
        def __init__(self, sample):
            self.sample = sample

    def oracle_forward(x, timestep, *args, **kwargs):
        sigma = (timestep.float() / 1000).view(-1, 1, 1, 1, 1)
        return Oracle(
            x0.expand_as(x[:, :channels]) if prediction == "sample" else (x[:, :channels] - x0) / sigma
        )

    pipe.transformer.forward = oracle_forward
    out = run(pipe, clip, target[0], num_inference_steps=10, replace_first_frame=False).frames
    from freeprop.eval.metrics.ground_truth import psnr

    assert psnr(out, target) > (45 if scheduler == "euler" else 30)


def test_flow_shift_follows_the_resolution_unless_fixed(clip, monkeypatch):
    import freeprop.pipeline as pipeline

    assert pipeline.shift_for_size(480, 832) == 3.0 and pipeline.shift_for_size(720, 1280) == 5.0
    assert pipeline.shift_for_size(544, 960) == 3.0 and pipeline.shift_for_size(704, 1280) == 5.0
    monkeypatch.setattr(pipeline, "SHIFT_720P_AREA", 32 * 48)  # make this clip count as "720p"
    pipe = tiny_pipeline()
    run(pipe, clip, 255 - clip[0], num_inference_steps=1)
    assert pipe.scheduler.config.flow_shift == 5.0
    fixed = pipeline.load_pipeline("tiny", shift=3.0)
    run(fixed, clip, 255 - clip[0], num_inference_steps=1)
    assert fixed.scheduler.config.flow_shift == 3.0
    euler = pipeline.load_pipeline("tiny", scheduler="euler")
    run(euler, clip, 255 - clip[0], num_inference_steps=1)
    assert euler.scheduler.config.shift == 5.0


class CountingFrames:
    """An iterator over a clip's frames that records how many were read."""

    def __init__(self, frames):
        self.frames, self.read = frames, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.read == len(self.frames):
            raise StopIteration
        self.read += 1
        return self.frames[self.read - 1]


def test_streaming_holds_one_window_and_equals_the_in_memory_call():
    """`stream` sends each frame as soon as no later window can change it, having read at most one
    window (plus one frame of look-ahead) past it — memory is bounded by the window, not the video —
    and its frames are exactly `__call__`'s."""
    pipe = tiny_pipeline()
    clip = moving_pattern(frames=41, height=32, width=32, speed=1)
    edit = clip[0][:, ::-1].copy()
    whole = run(pipe, clip, edit, window_frames=9, overlap=2, num_inference_steps=2)
    source, alphas = CountingFrames(clip), []
    frames = pipe.stream(source, edit, window_frames=9, overlap=2, num_inference_steps=2, alphas=alphas,
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    streamed = []
    for frame in frames:
        assert source.read <= len(streamed) + 9 + 1  # frame i leaves before frame i + window + 1 is read
        streamed.append(frame)
    np.testing.assert_array_equal(np.stack(streamed), whole.frames)
    assert alphas == whole.alphas and len(alphas) == len(window_starts(41, 9, 2))


def test_num_samples_averages_independent_samples(clip, tmp_path):
    pipe, edit, calls = tiny_pipeline(), 255 - clip[0], []
    averaged = run(pipe, clip[:9], edit, num_samples=3, callback=lambda i, n: calls.append((i, n))).frames
    assert calls[-1] == (9, 9)  # 3 steps × 3 samples on the progress bar
    generator, singles = torch.Generator().manual_seed(0), []
    for _ in range(3):  # each one-window run draws one noise tensor from the shared generator, as the samples do
        singles.append(pipe(clip[:9], edit, num_inference_steps=3, generator=generator).frames.astype(float))
    unclipped = (np.min(singles, 0) > 0) & (np.max(singles, 0) < 255)  # a random model's output saturates
    assert unclipped.mean() > 0.3
    assert np.abs(averaged - np.mean(singles, 0))[unclipped].max() <= 1  # the mean, up to uint8 rounding
    assert np.abs(averaged[1:] - singles[0][1:]).max() > 2  # not merely the first sample
    pipe.register_to_config(num_samples=3)
    pipe.save_pretrained(tmp_path)
    loaded = FreePropPipeline.from_pretrained(tmp_path)
    assert loaded.config.num_samples == 3
    np.testing.assert_array_equal(run(loaded, clip[:9], edit).frames, averaged)  # the stored default


def test_identity_correction_takes_off_the_models_own_change(clip, tmp_path):
    """out(edit) − c·(out(unedited) − source), both from the same noise: with the unedited first frame and
    c = 1 the source comes back exactly; otherwise the hand-made combination of two plain runs."""
    pipe, edit, calls = tiny_pipeline(), 255 - clip[0], []
    plain_identity = run(pipe, clip[:9], clip[0]).frames.astype(float)
    assert np.abs(plain_identity[1:] - clip[1:9]).max() > 20  # a random model changes an unedited video
    np.testing.assert_array_equal(run(pipe, clip[:9], clip[0], identity_correction=1.0).frames, clip[:9])

    plain_edit = run(pipe, clip[:9], edit).frames.astype(float)
    half = run(pipe, clip[:9], edit, identity_correction=0.5, callback=lambda i, n: calls.append((i, n))).frames
    assert calls[-1] == (6, 6)  # 3 steps for the edit and 3 for the unedited first frame
    expected = plain_edit - 0.5 * (plain_identity - clip[:9])
    inside = (expected > 1) & (expected < 254)  # neither the runs nor the result clipped
    inside &= (plain_edit > 0) & (plain_edit < 255) & (plain_identity > 0) & (plain_identity < 255)
    assert inside[1:].mean() > 0.3
    assert np.abs(half - expected)[1:][inside[1:]].max() <= 1.5  # up to the three runs' uint8 rounding
    np.testing.assert_array_equal(run(pipe, clip[:9], edit, identity_correction=0.0).frames, plain_edit)

    pipe.register_to_config(identity_correction=0.5)
    pipe.save_pretrained(tmp_path)
    loaded = FreePropPipeline.from_pretrained(tmp_path)
    np.testing.assert_array_equal(run(loaded, clip[:9], edit).frames, half)  # the stored default
    with pytest.raises(FreePropInputError, match="identity correction"):
        run(pipe, clip[:9], edit, identity_correction=1.5)


def test_gated_correction_by_hand():
    """Two pixels, grey levels / 127.5: the edit moved pixel A by 8 (one channel) and pixel B by 0."""
    grey = lambda *values: torch.tensor(values, dtype=torch.float64).reshape(3, 1, 1, 2) / 127.5  # noqa: E731
    edited = grey(100, 50, 60, 60, 70, 70)  # R of A, R of B, G of A, …
    unedited = grey(92, 50, 60, 60, 70, 70)  # A moved by 8 in R, B not at all
    source = grey(80, 40, 60, 60, 70, 70)  # the model's own error: 12 at A, 10 at B, in R
    for share, weight_a in ((0.0, 0.5), (0.5, 0.25), (1.0, 0.0)):  # w = min(1, 8/16)·(1 − share)
        out = gated_correction(edited, unedited, source, share, c=1.0, gate=16) * 127.5
        assert out[0, 0, 0, 0].item() == pytest.approx(100 - (1 - weight_a) * 12)
        assert out[0, 0, 0, 1].item() == pytest.approx(50 - 10)  # not moved: the full correction
        assert out[1:].numpy() == pytest.approx(edited[1:].numpy() * 127.5)  # no error, nothing taken off
    out = gated_correction(edited, unedited, source, 0.0, c=0.5, gate=4) * 127.5  # moved 8 ≥ gate: w = 1
    assert out[0, 0, 0, 0].item() == pytest.approx(100) and out[0, 0, 0, 1].item() == pytest.approx(45)


def test_edited_share_counts_pixels_changed_beyond_the_gate():
    source = np.zeros((2, 2, 3), np.uint8)
    first = source.copy()
    first[0, 0, 1], first[0, 1, 2], first[1, 0, 0] = 17, 16, 200  # over, at, far over 16
    assert edited_share(first, source, 16) == 0.5 and edited_share(source, first, 16) == 0.5
    assert edited_share(first, source, 0) == 0.75


def test_gated_correction_in_the_pipeline(clip, tmp_path):
    """c = 1 with the unedited first frame gives back the source; a local edit's output is the gated
    combination of the two plain runs; a global edit (every pixel moved) keeps the plain correction.
    Frame 0 is kept as generated: there the random model follows the edit most."""
    pipe = tiny_pipeline()
    go = lambda first, **kw: run(pipe, clip[:9], first, replace_first_frame=False, **kw).frames  # noqa: E731
    np.testing.assert_array_equal(go(clip[0], identity_correction=1.0, correction_gate=16), clip[:9])
    edit = clip[0].copy()
    edit[8:24, 10:30] = 255 - edit[8:24, 10:30]  # a local edit
    plain_edit, plain_identity = (go(f).astype(float) for f in (edit, clip[0]))
    inside = (plain_edit > 0) & (plain_edit < 255) & (plain_identity > 0) & (plain_identity < 255)
    inside = inside.all(-1, keepdims=True).repeat(3, -1)  # no channel clipped: the gate reads all three
    to = lambda frames: torch.from_numpy(frames).permute(3, 0, 1, 2) / 127.5  # noqa: E731  (an offset cancels)
    share = edited_share(edit, clip[0], 200)
    assert 0 < share < 0.5
    expected = gated_correction(to(plain_edit), to(plain_identity), to(clip[:9].astype(float)), share, 0.75, 200)
    expected = expected.permute(1, 2, 3, 0).numpy() * 127.5
    gated = go(edit, identity_correction=0.75, correction_gate=200)
    near = inside & (expected > 2) & (expected < 253)
    assert near.mean() > 0.15
    assert np.abs(gated - expected)[near].max() <= 2  # uint8 rounding of the runs (and of w: ≤ 1/200 · error)

    moved = np.abs(plain_edit - plain_identity).max(-1, keepdims=True).repeat(3, -1)
    saturated = (moved > 6) & inside  # moved past a gate of 4 (+ rounding): only the share-weighted correction
    share_4 = edited_share(edit, clip[0], 4)
    expected_4 = plain_edit - 0.75 * share_4 * (plain_identity - clip[:9])  # c·(1 − w), w = 1 − share
    sharp, ungated = go(edit, identity_correction=0.75, correction_gate=4), go(edit, identity_correction=0.75)
    assert saturated.sum() > 100  # in frame 0, where the random model follows the edit
    assert np.abs(sharp - expected_4)[saturated].max() <= 2
    assert np.abs(sharp[saturated].astype(int) - ungated[saturated]).mean() > 5  # the gate acts

    global_edit = ((clip[0].astype(int) + 128) % 256).astype(np.uint8)  # every channel of every pixel moved by 128
    np.testing.assert_allclose(go(global_edit, identity_correction=0.75, correction_gate=16),
                               go(global_edit, identity_correction=0.75), atol=1)

    pipe.register_to_config(identity_correction=0.75, correction_gate=200)
    pipe.save_pretrained(tmp_path)
    loaded = FreePropPipeline.from_pretrained(tmp_path)
    stored = run(loaded, clip[:9], edit, replace_first_frame=False).frames  # the stored default, up to uint8 rounding
    assert np.abs(stored.astype(int) - gated).max() <= 1 and (stored == gated).mean() > 0.999
    with pytest.raises(FreePropInputError, match="correction gate"):
        go(edit, correction_gate=-1)
