"""Tiny random metric models built from the real config classes — for tests and CPU benchmarks.

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
