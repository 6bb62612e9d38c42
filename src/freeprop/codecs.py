"""Latent codecs: map pixel videos `[B, 3, F, H, W]` in [-1, 1] to model latents and back.

Two implementations share one interface (`LatentCodec`):

- `WanVAECodec` wraps diffusers' `AutoencoderKLWan` (4× temporal, 8× spatial compression, 16
  channels) and applies Wan's per-channel normalisation `(z − latents_mean) / latents_std`, as
  diffusers' Wan pipelines do (the diffusers VAE itself returns *un-normalised* latents).
- `PixelCodec` is a lossless space-to-depth reshuffle (no temporal compression) so that tiny models
  run on a CPU without any VAE weights.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from freeprop.errors import FreePropInputError


@runtime_checkable
class LatentCodec(Protocol):
    latent_channels: int
    temporal_factor: int  # pixel frames per latent frame (after the first)
    spatial_factor: int  # pixels per latent pixel along H and W

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """`[B, 3, F, H, W]` in [-1, 1] → latents `[B, C, F', H/s, W/s]`."""

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents `[B, C, F', h, w]` → `[B, 3, F, h·s, w·s]` in [-1, 1]."""


def latent_num_frames(codec: LatentCodec, num_frames: int) -> int:
    """F' for F pixel frames: Wan's causal VAE keeps frame 0 and compresses the rest by 4."""
    return (num_frames - 1) // codec.temporal_factor + 1


def check_video_shape(codec: LatentCodec, video: torch.Tensor) -> None:
    """Raise a clear error if `video` cannot be encoded by `codec` (frame count, size)."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise FreePropInputError(f"expected a video tensor [B, 3, F, H, W], got {tuple(video.shape)}")
    frames, height, width = video.shape[2:]
    if (frames - 1) % codec.temporal_factor:
        raise FreePropInputError(
            f"{frames} frames: this codec needs k·{codec.temporal_factor}+1 frames; "
            f"use {(frames - 1) // codec.temporal_factor * codec.temporal_factor + 1}"
        )
    if height % codec.spatial_factor or width % codec.spatial_factor:
        raise FreePropInputError(
            f"size {height}x{width}: this codec needs multiples of {codec.spatial_factor} pixels"
        )


def pixel_codec_for(channels: int, hint: str = "load its VAE") -> PixelCodec:
    """The PixelCodec(s) whose latents have `channels` = 3·s² channels (16 is the Wan VAE's, never a pixel codec)."""
    factor = round((channels / 3) ** 0.5)
    if 3 * factor * factor != channels or channels == 16:
        raise FreePropInputError(f"this model takes {channels}-channel VAE latents; {hint}")
    return PixelCodec(factor)


class PixelCodec:
    """Lossless space-to-depth codec: `[B, 3, F, H, W]` → `[B, 3·s², F, H/s, W/s]` (exact inverse)."""

    temporal_factor = 1

    def __init__(self, spatial_factor: int = 2):
        self.spatial_factor = spatial_factor
        self.latent_channels = 3 * spatial_factor**2

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        check_video_shape(self, video)
        b, c, f, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * f, c, h, w)  # (B·F, 3, H, W)
        latents = F.pixel_unshuffle(frames, self.spatial_factor)  # (B·F, 3s², H/s, W/s)
        return latents.reshape(b, f, *latents.shape[1:]).transpose(1, 2)  # (B, 3s², F, H/s, W/s)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        frames = latents.transpose(1, 2).reshape(b * f, c, h, w)  # (B·F, 3s², h, w)
        video = F.pixel_shuffle(frames, self.spatial_factor)  # (B·F, 3, h·s, w·s)
        return video.reshape(b, f, *video.shape[1:]).transpose(1, 2)  # (B, 3, F, H, W)

    def __repr__(self) -> str:
        return f"PixelCodec(spatial_factor={self.spatial_factor})"


WAN_VAE_HELP = (
    "pass a diffusers-format Wan2.1 VAE folder: the vae/ folder of any Wan-AI/Wan2.1-*-Diffusers release "
    "(e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers), or a model folder that has one. The original Wan2.1_VAE.pth "
    "that VideoX-Fun's Fun-Control releases ship converts with diffusers' scripts/convert_wan_to_diffusers.py"
)


def load_wan_vae(path: str | os.PathLike, torch_dtype=torch.float32):
    """`AutoencoderKLWan` from a local diffusers folder (`path/vae/` or `path`), safetensors only."""
    from diffusers import AutoencoderKLWan

    path = os.fspath(path)
    if os.path.isfile(path):
        raise FreePropInputError(f"{path}: a single file, not a VAE folder; {WAN_VAE_HELP}")
    if not os.path.isdir(path):
        raise FreePropInputError(f"{path}: VAE folder not found; {WAN_VAE_HELP}")
    sub = "vae" if os.path.isdir(os.path.join(path, "vae")) else None
    if not os.path.isfile(os.path.join(path, sub or "", "config.json")):
        raise FreePropInputError(f"{path}: no config.json here or in vae/; {WAN_VAE_HELP}")
    from freeprop.hub import load_pretrained

    return load_pretrained(AutoencoderKLWan, path, subfolder=sub, torch_dtype=torch_dtype)  # safetensors only


class WanVAECodec:
    """Wan2.1 VAE (`diffusers.AutoencoderKLWan`) with Wan's latent normalisation.

    Args:
        vae: the VAE module (real weights via `WanVAECodec.from_pretrained`, or a tiny random one in tests).
        sample: draw from the posterior when encoding (training targets, as VideoX-Fun does) instead
            of taking its mode (`sample_mode="argmax"`, what diffusers' pipelines use for conditions).
        tiling / slicing: pass-through to `vae.enable_tiling()` / `vae.enable_slicing()` to bound memory.
    """

    def __init__(self, vae, sample: bool = False, tiling: bool = False, slicing: bool = False):
        self.vae = vae
        self.sample = sample
        cfg = vae.config
        self.latent_channels = cfg.z_dim
        self.temporal_factor = cfg.scale_factor_temporal or 4
        self.spatial_factor = cfg.scale_factor_spatial or 8
        # Per-channel statistics, shaped to broadcast over [B, C, F', h, w].
        self._mean = torch.tensor(cfg.latents_mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
        self._std = torch.tensor(cfg.latents_std, dtype=torch.float32).view(1, -1, 1, 1, 1)
        if tiling:
            vae.enable_tiling()
        if slicing:
            vae.enable_slicing()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, torch_dtype=torch.float32, **kwargs) -> WanVAECodec:
        """Load `AutoencoderKLWan` from a local diffusers folder (its `vae/` subfolder or itself)."""
        return cls(load_wan_vae(path, torch_dtype), **kwargs)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self._mean.to(z)) / self._std.to(z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._std.to(z) + self._mean.to(z)

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_video_shape(self, video)
        video = video.to(device=self.vae.device, dtype=self.vae.dtype)
        posterior = self.vae.encode(video).latent_dist  # (B, C, F', H/8, W/8) Gaussian
        z = posterior.sample(generator) if self.sample else posterior.mode()
        return self.normalize(z.float())

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = self.denormalize(latents.float()).to(device=self.vae.device, dtype=self.vae.dtype)
        return self.vae.decode(z).sample.float().clamp(-1, 1)  # (B, 3, F, H, W)

    def __repr__(self) -> str:
        return f"WanVAECodec(z_dim={self.latent_channels}, sample={self.sample})"
