"""Training data: pair-format samples → standardised clips → codec latents (cached on disk).

Each item is a dict of tensors for one pair:
    source:      (C, F', h, w)  z_src, latents of the source video
    target:      (C, F', h, w)  x₀, latents of the edited (target) video
    first_frame: (C, 1, h, w)   ẑ, latents of the target's frame 0 (the edited first frame), encoded alone
    text:        (512, text_dim) target-caption embeddings (zeros without a text encoder)
Latents are computed once per (sample, data settings, codec) and kept as safetensors under
`cache_dir`, so the VAE runs once per sample however many epochs follow.

`SyntheticLatentDataset` renders procedural pairs (`freeprop.data.synthetic.make_pair`) on the fly
instead (`data.synthetic_pairs`): pair i is seed i of the split, so the data are as deterministic as
a folder's, never repeat within `synthetic_pairs`, and cost no disk (rendering a 17-frame 64×64 pair
takes ≈ 15 ms, less than reading its cached latents back).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from freeprop.codecs import LatentCodec
from freeprop.data.pairs import Pair, PairDataset, video_of
from freeprop.errors import FreePropInputError
from freeprop.training.config import DataConfig
from freeprop.video import atomic_path, standardize, to_tensor


class LatentPairDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        cfg: DataConfig,
        codec: LatentCodec,
        cache_dir: str | Path | None = None,
        text_fn=None,
        text_shape: tuple[int, int] = (512, 16),
        image_fn=None,
    ):
        """`text_fn(caption)` → text tokens; `image_fn(frame)` → CLIP image tokens of the edited first frame
        (uint8 `[H, W, 3]` at the training size), as the pipeline computes them at inference."""
        self.cfg, self.codec, self.text_fn, self.text_shape = cfg, codec, text_fn, text_shape
        self.image_fn = image_fn
        self.pairs = PairDataset(cfg.path, split=cfg.split, tasks=cfg.tasks or None)
        self.cache_dir = None
        if cfg.cache_latents and cache_dir is not None:
            settings = json.dumps(
                [cfg.num_frames, cfg.height, cfg.width, cfg.fps, repr(codec), image_fn is not None], sort_keys=True
            )
            self.cache_dir = Path(cache_dir) / hashlib.sha1(settings.encode()).hexdigest()[:12]
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.pairs)

    def _encode(self, index: int) -> dict[str, torch.Tensor]:
        return pair_latents(self.pairs[index], self.cfg, self.codec, self.text_fn, self.image_fn)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.cache_dir is None:
            item = self._encode(index)
        else:
            path = self.cache_dir / f"{self.pairs.rows[index]['sample_id']}.safetensors"
            if path.is_file():
                item = load_file(path)
            else:
                item = self._encode(index)
                with atomic_path(path) as tmp:
                    save_file(item, str(tmp))
        if "text" not in item:
            item["text"] = torch.zeros(self.text_shape)
        return item


def pair_latents(pair: Pair, cfg: DataConfig, codec: LatentCodec, text_fn=None, image_fn=None) -> dict[str, torch.Tensor]:
    """One pair → the latent dict above: clips standardised to the training size, then encoded."""
    clips, frames = {}, {}
    for which in ("source", "target"):
        std = standardize(video_of(pair, which), cfg.height, cfg.width, num_frames=cfg.num_frames, fps=cfg.fps)
        frames[which] = std.frames
        clips[which] = to_tensor(std.frames)[None]  # (1, 3, F, H, W) in [-1, 1]
    with torch.no_grad():
        item = {
            "source": codec.encode(clips["source"])[0],
            "target": codec.encode(clips["target"])[0],
            "first_frame": codec.encode(clips["target"][:, :, :1])[0],
        }
        if text_fn is not None:
            item["text"] = text_fn(pair.target_caption)[0]
        if image_fn is not None:  # the edited first frame, as `FreePropPipeline.encode_image` sees it
            item["image"] = image_fn(frames["target"][0])[0]
    return {k: v.float().contiguous().cpu() for k, v in item.items()}


class SyntheticLatentDataset(torch.utils.data.Dataset):
    """`cfg.synthetic_pairs` procedural pairs of `cfg.split`, rendered when asked for (tasks in turn,
    as `freeprop data synth` writes them), at the training size; text tokens are zeros."""

    def __init__(self, cfg: DataConfig, codec: LatentCodec, text_shape: tuple[int, int] = (512, 16)):
        from freeprop.data.synthetic import SPLIT_SEEDS

        if cfg.split not in SPLIT_SEEDS:
            raise FreePropInputError(f"data.split must be one of {', '.join(SPLIT_SEEDS)} with data.synthetic_pairs")
        self.cfg, self.codec, self.text_shape = cfg, codec, text_shape
        self.first_seed = SPLIT_SEEDS[cfg.split]

    def __len__(self) -> int:
        return self.cfg.synthetic_pairs

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from freeprop.data.synthetic import TASKS, make_pair

        cfg = self.cfg
        tasks = cfg.tasks or TASKS
        seed = self.first_seed + index
        motion = 1 + (cfg.motion_max - 1) * np.random.default_rng([seed, 3]).random()  # own stream, as leaves
        pair = make_pair(seed, cfg.split, tasks[index % len(tasks)], cfg.num_frames, cfg.height, cfg.width,
                         motion=motion, leaves=cfg.leaves, camouflage=cfg.camouflage, photos=cfg.photos,
                         photo_pool=cfg.photo_pool)
        return pair_latents(pair, cfg, self.codec) | {"text": torch.zeros(self.text_shape)}
