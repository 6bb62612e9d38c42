"""The global-stylization track's model stages (paper §3.2).

- `ImageToVideo` — the source video from the OmniStyle content image and the cinematic caption with
  diffusers' `WanImageToVideoPipeline` (the paper: Wan2.1-14B-I2V), the image sized to the target
  area in multiples of 16 as diffusers' Wan I2V example does;
- `Depth` — a depth video for VACE's structural guidance: Depth Anything V2 through transformers
  (`DepthAnythingForDepthEstimation`, per frame), or Video Depth Anything (the paper's choice) from a
  local checkout (`video_depth_anything` importable, `backend="video-depth-anything"`). Either way
  the depth is normalised with **one range for the whole video** (its 1st–99th percentiles), not per
  frame as VACE's own annotator does, so the control video does not flicker.
"""

from __future__ import annotations

import math

import numpy as np

from freeprop.data.stages.base import Resources, Stage
from freeprop.data.stages.media import load_video, save_video
from freeprop.video import read_image, resize_cover_crop

WAN_I2V_14B = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"
DEPTH_ANYTHING_V2 = "depth-anything/Depth-Anything-V2-Large-hf"


def i2v_size(height: int, width: int, max_area: int = 720 * 1280, multiple: int = 16) -> tuple[int, int]:
    """The global track's video size: 16:9 (9:16 for a portrait image) at area ≈ max_area, sides multiples
    of 16 — 720×1280 by default, the local track's 720p (paper §3); the image is cover-cropped to it.
    (diffusers' Wan I2V example keeps the image's own aspect: a square image would give 960×960.)"""
    aspect = 16 / 9 if height > width else 9 / 16
    h = round(math.sqrt(max_area * aspect)) // multiple * multiple
    w = round(math.sqrt(max_area / aspect)) // multiple * multiple
    return max(multiple, h), max(multiple, w)


def normalize_depth(depth: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Float depth [F, H, W] → uint8 RGB [F, H, W, 3] with one percentile range for the whole video."""
    lo, hi = np.percentile(depth, [low, high])
    scaled = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.repeat((scaled * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


class ImageToVideo(Stage):
    name = "image_to_video"
    requires = ("content_image", "cinematic_caption")
    provides = ("source_video", "fps")
    tracks = ("global",)
    resources = Resources(cpus=2, gpus=1)
    models = {"pipe": "wan-i2v"}

    def __init__(self, pipe=WAN_I2V_14B, frames: int = 81, fps: float = 16.0, max_area: int = 720 * 1280,
                 steps: int = 40, guidance: float = 5.0, seed: int = 0, device: str = "cpu", dtype: str | None = None):  # fmt: skip
        self.pipe, self.frames, self.fps, self.max_area = pipe, frames, fps, max_area
        self.steps, self.guidance, self.seed, self.device, self.dtype = steps, guidance, seed, device, dtype

    def check(self) -> None:
        if isinstance(self.pipe, str):
            from freeprop.hub import check_available

            check_available(self.pipe, "models.i2v")

    def load(self, attr: str, spec: str):
        import torch
        from diffusers import AutoencoderKLWan, WanImageToVideoPipeline
        from transformers import CLIPVisionModel

        from freeprop.hub import load_pretrained

        dtype = self.torch_dtype(torch.bfloat16)
        vae = load_pretrained(AutoencoderKLWan, spec, subfolder="vae", torch_dtype=torch.float32)
        encoder = load_pretrained(CLIPVisionModel, spec, subfolder="image_encoder", torch_dtype=torch.float32)
        pipe = load_pretrained(WanImageToVideoPipeline, spec, vae=vae, image_encoder=encoder, torch_dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)

    def process(self, sample):
        import torch
        from PIL import Image

        out = self.work_dir(sample) / "source.mp4"
        if not out.is_file():
            image = read_image(sample["content_image"])
            h, w = i2v_size(*image.shape[:2], self.max_area)
            image = resize_cover_crop(image, h, w)[0]
            frames = self.model("pipe")(
                image=Image.fromarray(image),
                prompt=sample["cinematic_caption"],
                height=h,
                width=w,
                num_frames=self.frames,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                generator=torch.Generator().manual_seed(self.seed),
                output_type="np",
            ).frames[0]
            save_video(out, (np.clip(frames, 0, 1) * 255).round().astype(np.uint8), self.fps)
        return sample | {"source_video": str(out), "fps": str(self.fps)}


class DepthAnythingV2:
    """Per-frame relative depth from transformers' Depth Anything V2 (inverse depth, larger = nearer)."""

    def __init__(self, model, processor):
        self.model, self.processor = model.eval(), processor

    @classmethod
    def from_pretrained(cls, path: str = DEPTH_ANYTHING_V2, device="cpu", dtype=None):
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        from freeprop.hub import load_pretrained

        return cls(
            load_pretrained(DepthAnythingForDepthEstimation, path, device, dtype),
            load_pretrained(AutoImageProcessor, path),
        )

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        out = []
        p = next(self.model.parameters())
        for frame in frames:
            inputs = self.processor(images=frame, return_tensors="pt")["pixel_values"].to(p.device, p.dtype)
            with torch.no_grad():
                depth = self.model(pixel_values=inputs).predicted_depth  # [1, h, w]
            depth = F.interpolate(
                depth[None].float(), size=frame.shape[:2], mode="bilinear", align_corners=False
            )
            out.append(depth[0, 0].cpu().numpy())
        return np.stack(out)


class VideoDepthAnything:
    """The paper's Video Depth Anything from a local checkout of DepthAnything/Video-Depth-Anything."""

    CONFIGS = {
        "vits": dict(encoder="vits", features=64, out_channels=[48, 96, 192, 384]),
        "vitb": dict(encoder="vitb", features=128, out_channels=[96, 192, 384, 768]),
        "vitl": dict(encoder="vitl", features=256, out_channels=[256, 512, 1024, 1024]),
    }

    def __init__(self, checkpoint: str, encoder: str = "vitl", device="cpu"):
        import torch

        from freeprop.errors import FreePropInputError

        try:
            from video_depth_anything.video_depth import VideoDepthAnything as VDA
        except ImportError:
            raise FreePropInputError(
                "depth backend video-depth-anything: put a checkout of DepthAnything/Video-Depth-Anything on "
                "PYTHONPATH, or use the transformers backend (Depth Anything V2)"
            ) from None
        self.model = VDA(**self.CONFIGS[encoder])
        self.model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        self.model = self.model.to(device).eval()
        self.device = device

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        depths, _ = self.model.infer_video_depth(frames, 16, input_size=518, device=self.device)
        return np.asarray(depths, np.float32)


class Depth(Stage):
    name = "depth"
    requires = ("source_video",)
    provides = ("depth_video",)
    tracks = ("global",)
    resources = Resources(cpus=1, gpus=0.5)
    models = {"estimator": "depth"}

    def __init__(self, estimator=DEPTH_ANYTHING_V2, backend: str = "transformers", encoder: str = "vitl",
                 device: str = "cpu", dtype: str | None = None):  # fmt: skip
        self.estimator, self.backend, self.encoder, self.device, self.dtype = (
            estimator,
            backend,
            encoder,
            device,
            dtype,
        )

    def check(self) -> None:
        if isinstance(self.estimator, str):
            from freeprop.hub import check_available

            check_available(self.estimator, "models.depth")

    def load(self, attr: str, spec: str):
        if self.backend == "video-depth-anything":
            return VideoDepthAnything(spec, self.encoder, self.device)
        return DepthAnythingV2.from_pretrained(spec, self.device, self.torch_dtype())

    def model_options(self, attr: str) -> tuple:
        return (self.backend, self.encoder)

    def process(self, sample):
        out = self.work_dir(sample) / "depth.mp4"
        if not out.is_file():
            depth = self.model("estimator")(load_video(sample["source_video"]))
            save_video(out, normalize_depth(depth), float(sample["fps"] or 16))
        return sample | {"depth_video": str(out)}
