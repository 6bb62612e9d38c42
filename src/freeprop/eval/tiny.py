"""Tiny random models built from the real config classes (metric models, the Qwen VL judge, Qwen-Image-Edit) — for tests and CPU benchmarks.

Each writes a folder that loads exactly like the released checkpoint (`from_pretrained`), so the
code under test is the code that runs on CLIP ViT-L/14 and DINOv2-base; only the sizes differ.
`size="base"` builds the default (ViT-B-sized) configs instead, for realistic CPU timings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def clip_tokenizer(folder: str | Path):
    """A `CLIPTokenizer` over a 57-token BPE vocabulary (letters, a few merges, <sot> = 55, <eot> = 56)."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = list(letters) + [c + "</w>" for c in letters] + ["ab</w>", "re", "red</w>"]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\na b</w>\nr e\nre d</w>\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def save_clip(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random `CLIPModel` + `CLIPProcessor` folder with logit_scale.exp() = 100 (as OpenAI's)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = clip_tokenizer(folder / "tokenizer-src")
    special = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if size == "tiny":
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        text |= dict(max_position_embeddings=77, projection_dim=16)
        vision |= dict(image_size=32, patch_size=8, projection_dim=16)
        config, crop = CLIPConfig(text_config=text | special, vision_config=vision, projection_dim=16), 32
    else:  # the default config: ViT-B/32 towers
        config, crop = CLIPConfig(text_config=special), 224
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    model.save_pretrained(folder)
    image = CLIPImageProcessor(size={"shortest_edge": crop}, crop_size={"height": crop, "width": crop})
    CLIPProcessor(image_processor=image, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_dino(folder: str | Path, size: str = "tiny", seed: int = 1) -> Path:
    """A random `Dinov2Model` + `BitImageProcessor` folder."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    if size == "tiny":
        config = Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=28,
            patch_size=7,
        )
        resize, crop = 32, 28
    else:  # DINOv2-base sized
        config, resize, crop = Dinov2Config(image_size=224, patch_size=14), 256, 224
    torch.manual_seed(seed)
    folder = Path(folder)
    Dinov2Model(config).eval().save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": resize}, crop_size={"height": crop, "width": crop}
    ).save_pretrained(folder)
    return folder


def qwen_vl(seed: int = 0):
    """A random 2-layer `Qwen2_5_VLForConditionalGeneration` (hidden size 32) and a processor for it.

    The processor is transformers' `Qwen2_5_VLProcessor` minus its video processor (that one needs
    torchvision), over a byte-level BPE tokenizer with Qwen's special tokens and the PIL image
    processor; the chat template is a short ChatML one.
    """

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.add_special_tokens(special)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )

    class ImageOnlyProcessor(Qwen2_5_VLProcessor):
        @classmethod
        def get_attributes(cls):
            return ["image_processor", "tokenizer"]

        def __init__(self, image_processor, tokenizer, chat_template=None):
            super(Qwen2_5_VLProcessor, self).__init__(image_processor, tokenizer, chat_template=chat_template)
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id, self.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]

    processor = ImageOnlyProcessor(
        Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16), tokenizer, template
    )
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return Qwen2_5_VLForConditionalGeneration(config).eval(), processor


def qwen_image_edit(seed: int = 0):
    """A random `QwenImageEditPipeline` of diffusers' real classes: a 1-layer `QwenImageTransformer2DModel`,
    an 8-channel `AutoencoderKLQwenImage` and the tiny `qwen_vl` text encoder (joint_attention_dim 32)."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )

    text_encoder, processor = qwen_vl(seed)
    torch.manual_seed(seed)
    z_dim = 4
    vae = AutoencoderKLQwenImage(base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                 temperal_downsample=[False, True, True],
                                 latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=4 * z_dim, out_channels=z_dim, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192)
    return QwenImageEditPipeline(scheduler=scheduler, vae=vae.eval(), text_encoder=text_encoder,
                                 tokenizer=processor.tokenizer, processor=processor, transformer=transformer.eval())
