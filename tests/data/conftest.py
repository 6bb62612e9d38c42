"""Tiny real models for the FFP-300K pipeline tests (diffusers / transformers classes, random weights)."""

import numpy as np
import pytest
import torch


def tiny_t5():
    """A UMT5 encoder and a word-level tokenizer (AutoTokenizer-compatible) small enough for CPU tests."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    words = [
        "the",
        "video",
        "shows",
        "a",
        "ball",
        "on",
        "grass",
        "red",
        "blue",
        "painting",
        "scene",
        "with",
        "sky",
        "tree",
        "car",
        "person",
        "cup",
    ]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2} | {w: i + 3 for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=4)
    )
    return tokenizer, encoder.eval()


def tiny_wan_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    ).eval()


@pytest.fixture(scope="session")
def tiny_vace():
    return build_tiny_vace()


def build_tiny_vace():
    """diffusers' own tiny WanVACEPipeline recipe (tests/pipelines/wan/test_wan_vace.py), built locally."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    tokenizer, encoder = tiny_t5()
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96,
    )  # fmt: skip
    pipe = WanVACEPipeline(
        tokenizer=tokenizer, text_encoder=encoder, vae=tiny_wan_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        transformer=transformer,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_i2v():
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    tokenizer, encoder = tiny_t5()
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=4, projection_dim=4, num_hidden_layers=2,
                                                            num_attention_heads=2, image_size=32, intermediate_size=16,
                                                            patch_size=1)).eval()  # fmt: skip
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, image_dim=4,
    )  # fmt: skip
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=encoder, vae=tiny_wan_vae(), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_processor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=vision, transformer=transformer,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


class ScriptedVLM:
    """Answers each paper prompt with a fixed valid JSON reply (a deterministic fake for pipeline logic)."""

    def __init__(self, overrides=None):
        self.replies = {
            "Identify the main editable object": '{"Object": "ball"}',
            "Write ONE concise caption in present tense": '{"Caption": "The video shows a ball on grass."}',
            "Rewrite the caption": '```json\n{"Remove_Caption": "The video shows grass under the sky."}\n```',
            "Video A: Source Video": '{"Task": "Modification"}',
            "cinematic video caption": '{"Caption": "A calm scene with a tree and sky."}',
            "style reference image": '{"Style_Caption": "A painting of a tree under a blue sky."}',
            "Judge the edited video strictly": '{"Pass": "yes"}',
            "Does the instruction correctly": '{"Match": "yes"}',
        } | (overrides or {})
        self.calls = []

    def chat(self, images, prompt):
        self.calls.append(prompt)
        return next(reply for key, reply in self.replies.items() if key in prompt)


class DiscDetector:
    def detect(self, image, phrase):
        return [8.0, 8.0, 40.0, 40.0], 0.9


class DiscTracker:
    """A disc that follows nothing (fixed): enough to drive the mask strategies and VACE."""

    def track(self, frames, box):
        f, h, w = frames.shape[:3]
        yy, xx = np.mgrid[:h, :w]
        disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 4) ** 2
        return np.repeat(disc[None], f, axis=0)


class ConstantDepth:
    def __call__(self, frames):
        f, h, w = frames.shape[:3]
        return np.tile(np.linspace(0, 1, w, dtype=np.float32), (f, h, 1))
