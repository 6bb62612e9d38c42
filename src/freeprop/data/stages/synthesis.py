"""Synthesis with VACE through diffusers' `WanVACEPipeline` (paper §3.1, §3.2), and the finishing stage.

| task | VACE video | VACE mask (white = regenerate) | reference | prompt |
|---|---|---|---|---|
| swap | source frames | object mask eroded by `erode_px` (no bbox) | — | original caption |
| removal | source frames | mask ∪ bbox, dilated by `dilate_px` (with bbox) | — | removal caption |
| stylization | depth video (3-channel) | none (regenerate all) | the style image | style caption |

Defaults follow diffusers' Wan VACE examples: 50 UniPC steps with flow shift 5.0 (720p; 3.0 for
480p), guidance 5.0; the VAE is kept in float32. `lora` loads a LoRA (e.g. the removal fine-tune of
§3.3, `freeprop data finetune-vace`) with diffusers' `load_lora_weights`. The `pipe` argument takes a
ready pipeline (tests build a tiny one from the config classes).

`Finish` fills what the pair writer needs: the final task (the discrimination's answer for swaps),
the instruction text, and the target caption.
"""

from __future__ import annotations

import numpy as np

from freeprop.data import prompts
from freeprop.data.masks import erode, scaled_px, to_video, with_bbox
from freeprop.data.stages.base import Resources, Stage
from freeprop.data.stages.media import load_masks, load_video, save_masks, save_video
from freeprop.video import read_image

VACE_14B = "Wan-AI/Wan2.1-VACE-14B-diffusers"
NEGATIVE_PROMPT = (  # Wan's standard negative prompt (English rendering)
    "bright colors, overexposed, static, blurred details, subtitles, style, artwork, painting, still image, "
    "overall gray, worst quality, low quality, JPEG artifacts, ugly, deformed, extra fingers, poorly drawn hands, "
    "poorly drawn face, malformed limbs, fused fingers, cluttered background, walking backwards"
)


def load_vace(
    path: str = VACE_14B, device="cpu", dtype=None, flow_shift: float = 5.0, lora: str | None = None
):
    """`WanVACEPipeline` with a float32 VAE and a UniPC flow scheduler (diffusers' recommended set-up)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACEPipeline

    from freeprop.hub import load_pretrained

    vae = load_pretrained(AutoencoderKLWan, path, subfolder="vae", torch_dtype=torch.float32)
    pipe = load_pretrained(WanVACEPipeline, path, vae=vae, torch_dtype=dtype or torch.bfloat16)
    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config, flow_shift=flow_shift)
    if lora:
        pipe.load_lora_weights(lora)
    return pipe.to(device)


class VACESynthesis(Stage):
    name = "vace"
    provides = ("vace_mask", "edited_video")
    resources = Resources(cpus=2, gpus=1)
    models = {"pipe": "vace"}

    def __init__(
        self,
        pipe=VACE_14B,
        steps: int = 50,
        guidance: float = 5.0,
        flow_shift: float = 5.0,
        erode_px: int = 8,
        dilate_px: int = 8,
        seed: int = 0,
        lora: str | None = None,
        negative_prompt: str = NEGATIVE_PROMPT,
        device: str = "cpu",
        dtype: str | None = None,
        grey_fill: bool = True,
    ):
        """`grey_fill`: give VACE the source with the masked region filled with grey 128, as VACE's own
        inpainting preprocessing does (diffusers' WanVACEPipeline encodes `video * mask` as given, so raw
        frames would show it the object it must replace or remove)."""
        self.pipe, self.steps, self.guidance, self.flow_shift = pipe, steps, guidance, flow_shift
        self.model_id = pipe if isinstance(pipe, str) else type(pipe).__name__  # part of every cache key
        self.erode_px, self.dilate_px, self.seed, self.lora = erode_px, dilate_px, seed, lora
        self.negative_prompt, self.device, self.dtype, self.grey_fill = negative_prompt, device, dtype, grey_fill

    def check(self) -> None:
        from freeprop.hub import check_available

        if isinstance(self.pipe, str):
            check_available(self.pipe, "models.vace")
        if self.lora:
            check_available(self.lora, "models.vace_lora")

    def load(self, attr: str, spec: str):
        pipe = load_vace(spec, self.device, self.torch_dtype(), self.flow_shift, self.lora)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def model_options(self, attr: str) -> tuple:
        return (self.flow_shift, self.lora)

    def inputs(self, sample) -> tuple[np.ndarray, np.ndarray | None, list | None, str]:
        """(VACE video, VACE mask or None, reference images or None, prompt) for this sample's task."""
        task = sample["task"]
        if task == "stylization":
            depth = load_video(sample["depth_video"])
            return depth, None, [read_image(sample["style_image"])], sample["style_caption"]
        frames = load_video(sample["source_video"])
        masks = load_masks(sample["masks"])
        h, w = frames.shape[1:3]
        if task == "removal":
            mask, prompt = with_bbox(masks, scaled_px(self.dilate_px, h, w)), sample["removal_caption"]
        else:
            mask, prompt = erode(masks, scaled_px(self.erode_px, h, w)), sample["caption"]
        if self.grey_fill:  # VACE's own inpainting preprocessing: the region to regenerate is grey (128),
            frames = np.where(np.asarray(mask, bool)[..., None], np.uint8(128), frames)  # so no object leaks in
        return frames, mask, None, prompt

    def process(self, sample):
        import torch
        from PIL import Image

        work, task = self.work_dir(sample), sample["task"]
        video, mask, references, prompt = self.inputs(sample)
        # the output is keyed by all that makes it: model and LoRA (regeneration with a fine-tuned VACE
        # must not return the old edits), prompt, sampler settings and every input frame (the style too)
        key = self.input_key(self.model_id, self.lora, prompt, self.negative_prompt, self.steps, self.guidance,
                             self.flow_shift, self.seed, video, mask, *(references or []))
        out = work / f"edited-{task}-{key}.mp4"
        mask_path = work / f"vace-mask-{task}-{key}.npz"
        if not out.is_file():
            f, h, w = video.shape[:3]
            result = self.model("pipe")(
                video=[Image.fromarray(frame) for frame in video],
                mask=None if mask is None else [Image.fromarray(m) for m in to_video(mask)],
                reference_images=None if references is None else [Image.fromarray(r) for r in references],
                prompt=prompt,
                negative_prompt=self.negative_prompt,
                height=h,
                width=w,
                num_frames=f,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance,
                generator=torch.Generator().manual_seed(self.seed),
                output_type="np",
            ).frames[0]
            frames = (np.clip(np.asarray(result, np.float32), 0, 1) * 255).round().astype(np.uint8)
            save_video(out, frames[:f], float(sample["fps"] or 16))
        if mask is not None:
            save_masks(mask_path, mask)
        return sample | {"vace_mask": str(mask_path) if mask is not None else "", "edited_video": str(out)}


class Finish(Stage):
    """Final task, instruction and captions for the pair writer (no model)."""

    name = "finish"
    provides = ("final_task", "instruction")
    thread_safe = True  # files only

    def process(self, sample):
        task = sample["final_task"] or sample["task"]
        fields = {"object": sample["object"] or "object", "style": sample["style_caption"]}
        instruction = prompts.INSTRUCTIONS[task].format(**fields)
        return sample | {"final_task": task, "instruction": instruction}
