"""Tiny random CLIP / DINOv2 models (real transformers classes) saved as folders, like the real ones."""

import math

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory, clip_tokenizer):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    text = dict(vocab_size=len(clip_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                bos_token_id=clip_tokenizer.bos_token_id, eos_token_id=clip_tokenizer.eos_token_id,
                pad_token_id=clip_tokenizer.pad_token_id)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8, projection_dim=16)  # fmt: skip
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # as OpenAI's checkpoint: logit_scale.exp() = 100
    folder = tmp_path_factory.mktemp("tiny-clip")
    model.save_pretrained(folder)
    image = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image, tokenizer=clip_tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_dino_folder(tmp_path_factory):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(1)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, image_size=28, patch_size=7)).eval()  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-dino")
    model.save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28}).save_pretrained(
        folder
    )
    return folder
