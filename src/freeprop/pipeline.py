"""FreePropPipeline: first-frame propagation inference, diffusers-style.

Given a source video V and an edited first frame v̂, generate the edited video (paper §4.1):

1. bring V and v̂ to a model-valid size (H, W multiples of codec stride × patch) and frame count
   (k·temporal_factor + 1 for the Wan VAE), padding the video in time by repeating its last frame;
2. encode z_src = E(V) and ẑ = E(v̂) with the latent codec; optional UMT5 text and CLIP image embeddings;
3. integrate the flow-matching ODE from noise with the scheduler, the transformer seeing
   `[z_t | z_src | ẑ zero-padded | M]` at every step (classifier-free guidance when a prompt is given);
4. decode, map back to the user's size and frame count, and (by default) put v̂ itself at frame 0.

**Long videos** (beyond the paper, as Señorita-2M chains clips): a source longer than the model's
window is processed in windows of `window_frames`; window k starts `window_frames − overlap` frames
after window k−1 and is conditioned on the frame that window k−1 generated at its start, so the
edit is carried forward. The `overlap` frames both windows produce are cross-faded linearly.

Components: `transformer` (FreePropTransformer), `scheduler` (flow matching: Euler or UniPC), and
optionally `vae` (AutoencoderKLWan; without it a lossless PixelCodec is used, for tiny models),
`text_encoder` + `tokenizer` (UMT5, 512 tokens), `image_encoder` + `image_processor` (CLIP ViT-H, for
checkpoints with an image branch, as Fun-Control has).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.loaders import WanLoraLoaderMixin
from diffusers.utils import BaseOutput
from PIL import Image

from freeprop.codecs import WanVAECodec, latent_num_frames, load_wan_vae, pixel_codec_for
from freeprop.defaults import SAMPLING
from freeprop.errors import FreePropInputError
from freeprop.hub import load_pretrained
from freeprop.models.transformer import FreePropTransformer, build_ffp_input
from freeprop.video import (
    atomic_path,
    from_tensor,
    read_json_object,
    replaced_folder,
    resize_cover_crop,
    to_tensor,
)

TEXT_TOKENS = 512  # Wan pads umT5 output to 512 tokens (its I2V cross-attention assumes it)
IMAGE_TOKENS = 257  # CLIP ViT-H/14 penultimate hidden states at 224 px


SHIFT_720P_AREA = (480 * 832 + 720 * 1280) // 2  # halfway between Wan2.1's 480p and 720p areas


def shift_for_size(height: int, width: int) -> float:
    """Wan2.1's flow shift for the resolution a model runs at: 3.0 at 480p, 5.0 at 720p."""
    return SAMPLING.shift_720p if height * width >= SHIFT_720P_AREA else SAMPLING.shift


def with_shift(scheduler, shift: float):
    """`scheduler` with flow shift `shift` (UniPC calls it flow_shift, Euler shift); itself if unchanged."""
    key = "flow_shift" if "flow_shift" in scheduler.config else "shift"
    if scheduler.config[key] == shift:
        return scheduler
    return type(scheduler).from_config(scheduler.config, **{key: shift})


def make_scheduler(kind: str = SAMPLING.scheduler, shift: float = SAMPLING.shift):
    """Flow-matching scheduler. Wan's defaults: UniPC, shift 3.0 at 480p and 5.0 at 720p."""
    if kind == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
            num_train_timesteps=1000,
        )
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    raise FreePropInputError(f"unknown scheduler {kind!r}; choose 'unipc' or 'euler'")


def load_pipeline(
    model: str | os.PathLike = "tiny",
    weights: str | os.PathLike | None = None,
    vae: str | os.PathLike | None = None,
    scheduler: str = SAMPLING.scheduler,
    shift: float | None = None,
    torch_dtype: torch.dtype = torch.float32,
) -> FreePropPipeline:
    """A pipeline from what a user names on the command line. `shift=None` lets the flow shift follow
    the resolution of each call (`shift_for_size`); a number fixes it.

    - a pipeline folder (`model_index.json`, written by `save_pretrained`): loaded as saved;
    - a transformer folder (`config.json` + safetensors) or a preset name; with a preset, `weights`
      may be FreeProp weights, or a Wan2.1 Fun-Control checkpoint (original or diffusers key layout,
      3·C input channels), which is converted and widened for the mask M;
    - `vae`: a diffusers `AutoencoderKLWan` folder (or a model folder with `vae/`), for 16-channel models.
    """
    from freeprop.models.loading import load_model

    spec = Path(model)
    if (spec / "model_index.json").is_file():
        pipe = FreePropPipeline.from_pretrained(spec, torch_dtype=torch_dtype)
        if shift is not None or scheduler != SAMPLING.scheduler:
            pipe.scheduler = make_scheduler(scheduler, SAMPLING.shift if shift is None else shift)
    else:
        transformer = load_model(model, weights, torch_dtype)
        vae_model = None if vae is None else load_wan_vae(vae)
        sampler = make_scheduler(scheduler, SAMPLING.shift if shift is None else shift)
        pipe = FreePropPipeline(transformer.eval(), sampler, vae=vae_model)
    pipe.fixed_shift = shift
    return pipe


@dataclass
class FreePropPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor | list  # np uint8 [F, H, W, 3]; pt [F, 3, H, W] in [0, 1]; pil
    alphas: list[tuple[float, float]]  # (α_S, α_T) predicted for each window
    timings: dict[str, float] | None = None  # seconds per stage: resize, encode, denoise, decode


@contextmanager
def _timed(timings: dict[str, float], stage: str, device: torch.device):
    """Add the wall time of the block to `timings[stage]` (synchronising CUDA so GPU work is counted)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def _as_frames(video) -> np.ndarray:
    """uint8 [F, H, W, 3] from an array, a `Video`, a list of PIL images or a float tensor [F, 3, H, W] in [0, 1]."""
    if hasattr(video, "frames") and hasattr(video, "fps"):
        video = video.frames
    if isinstance(video, list | tuple) and video and isinstance(video[0], Image.Image):
        video = np.stack([np.asarray(im.convert("RGB")) for im in video])
    if isinstance(video, torch.Tensor):
        video = (video.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise FreePropInputError(f"source video must be uint8 [F, H, W, 3], got {video.dtype} {video.shape}")
    return video


def _as_image(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = _as_frames(image[None])[0]
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise FreePropInputError(f"first frame must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    return image


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    return resize_cover_crop(frames, height, width)[0]


def check_overlap(window: int, overlap: int) -> None:
    if not 1 <= overlap < window:
        raise FreePropInputError(f"overlap must be in 1..{window - 1} for {window}-frame windows, got {overlap}")


def window_starts(num_frames: int, window: int, overlap: int) -> list[int]:
    """Start frame of each window: the first at 0, then every `window − overlap` until the end is covered."""
    check_overlap(window, overlap)
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(starts[-1] + window - overlap)
    return starts


def gated_correction(
    edited: torch.Tensor, unedited: torch.Tensor, source: torch.Tensor, edited_share: float, c: float, gate: float
) -> torch.Tensor:
    """Identity correction taken off only where the edit did not move the output (ours, beyond the paper).

    All `[3, F, h, w]` in [-1, 1]: out(edit) − c·(1 − w)·(out(unedited) − source), with the weight
    w = min(1, max over RGB |out(edit) − out(unedited)| / gate) · (1 − edited_share), `gate` in grey levels.
    Where the edit changed the output, out(unedited) saw other content, so its error says little about
    the edited output's; a global edit (`edited_share`: the part of frame 0 the edit changed, → 1) moves
    every pixel and keeps the plain correction. Chosen on the val and real splits (docs/model.md).
    """
    moved = (edited - unedited).abs().amax(0, keepdim=True) * 127.5  # (1, F, h, w) grey levels
    weight = (moved / gate).clamp(max=1) * (1 - edited_share)
    return edited - c * (1 - weight) * (unedited - source)


def edited_share(first: np.ndarray, source_first: np.ndarray, gate: float) -> float:
    """The part of frame 0 an edit changed by more than `gate` grey levels in some channel (uint8 `[h, w, 3]`)."""
    return float((np.abs(first.astype(np.int16) - source_first).max(-1) > gate).mean())


def _open_bar(pipe):
    """A progress bar of unknown length (diffusers' `progress_bar` needs one), with the pipeline's settings."""
    from tqdm.auto import tqdm

    return tqdm(**getattr(pipe, "_progress_bar_config", {}))


class _Frames:
    """The source frames a streaming edit still needs: read on demand from an iterator, kept at full
    and at model size until their output frame is sent; a window past the end repeats the last frame."""

    def __init__(self, frames: Iterable[np.ndarray]):
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise FreePropInputError("the source video has no frames")
        self._it = itertools.chain([first], frames)  # frame 0 read for its size, then in turn
        self.shape = first.shape[:2]
        self.full: dict[int, np.ndarray] = {}
        self.small: dict[int, np.ndarray] = {}
        self.count, self.done, self.resize_to = 0, False, None

    def fill(self, upto: int) -> None:
        """Read until `upto` frames have been read or the source ends."""
        while self.count < upto and not self.done:
            frame = next(self._it, None)
            if frame is None:
                self.done = True
                break
            frame = _as_frames(np.asarray(frame)[None])[0]
            if frame.shape[:2] != self.shape:
                raise FreePropInputError(f"frame {self.count} is {frame.shape[0]}x{frame.shape[1]}, frame 0 "
                                         f"{self.shape[0]}x{self.shape[1]}: every frame must be the same size")
            self.full[self.count], self.small[self.count] = frame, _resize(frame, *self.resize_to)
            self.count += 1

    def window(self, start: int, length: int) -> np.ndarray:
        last = self.count - 1
        return np.stack([self.small[min(i, last)] for i in range(start, start + length)])

    def pop(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.full.pop(index), self.small.pop(index)


LORA_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name
TRAINED_MODULES = (
    "trained_modules.safetensors"  # fully trained modules beside the LoRA (AST-RoPE predictor, M channels)
)
TRAINED_MODULE_PREFIXES = ("alpha_predictor.", "patch_embedding.")
ADAPTER_CONFIG = "freeprop_adapter.json"  # what else the adapter needs: the head map it was trained with


def save_adapter(folder: str | os.PathLike, transformer: FreePropTransformer) -> Path:
    """Write what fine-tuning changed: the LoRA (diffusers format) and the fully trained modules.

    `folder/pytorch_lora_weights.safetensors` holds the peft LoRA layers under `transformer.` (as
    diffusers' `save_lora_weights`); `folder/trained_modules.safetensors` holds the AlphaPredictor and
    `patch_embedding` (the mask channels M train fully, paper §4.1–4.2); `folder/freeprop_adapter.json`
    the head map. The LoRA file's metadata carries its LoraConfig (rank, alpha, targets).
    """
    with replaced_folder(folder) as partial:  # written whole, then swapped in
        _write_adapter(partial, transformer)
    return Path(folder)


def adapter_is_complete(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a whole adapter as `save_adapter` writes it (the LoRA file is optional)."""
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).is_file() and (folder / TRAINED_MODULES).is_file()


def _write_adapter(folder: Path, transformer: FreePropTransformer) -> None:
    from peft.utils import get_peft_model_state_dict

    from freeprop.models.loading import write_safetensors

    if getattr(transformer, "peft_config", None):
        # the adapter's LoraConfig goes into the file's metadata (as diffusers' training scripts do), so
        # load_lora_weights restores lora_alpha; without it diffusers reloads alpha = rank
        config = next(iter(transformer.peft_config.values()))
        FreePropPipeline.save_lora_weights(
            folder,
            transformer_lora_layers=get_peft_model_state_dict(transformer),
            transformer_lora_adapter_metadata=config.to_dict(),
        )
    # the spatial/temporal head map AST-RoPE was trained with (§8.1), restored by load_adapter
    with atomic_path(folder / ADAPTER_CONFIG) as tmp:
        tmp.write_text(json.dumps({"head_map": transformer.config.head_map}, indent=1))
    trained = {
        k: v.detach().contiguous().cpu()
        for k, v in transformer.state_dict().items()
        if k.startswith(TRAINED_MODULE_PREFIXES) and "lora" not in k
    }
    with atomic_path(folder / TRAINED_MODULES) as tmp:
        write_safetensors(trained, tmp)


class FreePropPipeline(DiffusionPipeline, WanLoraLoaderMixin):
    """First-frame propagation with a `FreePropTransformer` (see the module docstring).

    LoRA support comes from diffusers' `WanLoraLoaderMixin` (`load_lora_weights`, `fuse_lora`,
    `unload_lora_weights`); `load_adapter` also restores the fully trained FreeProp modules.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->transformer->vae"
    _optional_components = ["vae", "text_encoder", "tokenizer", "image_encoder", "image_processor"]

    def __init__(
        self,
        transformer: FreePropTransformer,
        scheduler,
        vae=None,
        text_encoder=None,
        tokenizer=None,
        image_encoder=None,
        image_processor=None,
        sample_size: tuple[int, int] | list[int] | None = None,
        window_frames: int | None = None,
        num_inference_steps: int | None = None,
        num_samples: int | None = None,
        identity_correction: float | None = None,
        correction_gate: float | None = None,
    ):
        super().__init__()
        self.register_modules(
            transformer=transformer,
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            image_encoder=image_encoder,
            image_processor=image_processor,
        )
        # sample_size: the model's native (H, W), e.g. the resolution the bundled tiny model was trained at;
        # window_frames: frames per window (default 81 with the Wan VAE, 17 with the pixel codec);
        # num_inference_steps: the model's own default step count (measured for the bundled model), else 30;
        # num_samples: how many samples each window averages (default 1; see `_denoise_window`);
        # identity_correction: the share of the model's own change to an unedited video to take off (default 0);
        # correction_gate: grey levels of change by the edit above which that correction is not taken off (`gated_correction`).
        self.register_to_config(
            sample_size=list(sample_size) if sample_size else None,
            window_frames=window_frames,
            num_inference_steps=num_inference_steps,
            num_samples=num_samples,
            identity_correction=identity_correction,
            correction_gate=correction_gate,
        )
        self.fixed_shift: float | None = None  # None: the shift follows the model resolution (`shift_for_size`)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, torch_dtype: torch.dtype | None = None, **kwargs):
        """Load a pipeline folder written by `save_pretrained` (local only; strict for the transformer).

        Components other than the transformer load with their own libraries' `from_pretrained`
        (diffusers schedulers and `AutoencoderKLWan`, transformers' UMT5 / CLIP), never with
        `trust_remote_code`. `kwargs` override entries of `model_index.json` (e.g. `window_frames`).
        """

        import diffusers
        import transformers

        from freeprop.models.loading import load_transformer_folder

        folder = Path(folder)
        index_file = folder / "model_index.json"
        if not index_file.is_file():
            raise FreePropInputError(
                f"{folder}: no model_index.json; pass a folder written by save_pretrained"
            )
        index = read_json_object(index_file, "a pipeline index")
        parts = {"transformer": load_transformer_folder(folder / "transformer", torch_dtype)}
        for name in ("scheduler", "vae", "text_encoder", "tokenizer", "image_encoder", "image_processor"):
            library, class_name = index.get(name) or (None, None)
            if class_name is None:
                continue
            if library not in ("diffusers", "transformers"):
                raise FreePropInputError(
                    f"{folder}: component {name} comes from {library!r}; only diffusers/transformers"
                )
            component_cls = getattr(diffusers if library == "diffusers" else transformers, str(class_name), None)
            if not isinstance(component_cls, type):
                raise FreePropInputError(f"{index_file}: component {name}: {library} has no class {class_name!r}")
            extra = (
                {"torch_dtype": torch_dtype}
                if torch_dtype and name in ("vae", "text_encoder", "image_encoder")
                else {}
            )
            parts[name] = load_pretrained(component_cls, str(folder / name), **extra)  # safetensors only
        options = {k: index[k] for k in ("sample_size", "window_frames", "num_inference_steps", "num_samples",
                                        "identity_correction", "correction_gate")
                   if k in index}
        return cls(**parts, **{**options, **kwargs})

    # ------------------------------------------------------------------------------------------

    @property
    def codec(self):
        if self.vae is not None:
            return WanVAECodec(self.vae)
        return pixel_codec_for(self.transformer.config.out_channels, "load a pipeline folder with vae/")

    @property
    def size_multiple(self) -> int:
        return self.codec.spatial_factor * self.transformer.config.patch_size[1]

    def default_window(self) -> int:
        if self.config.window_frames:
            return self.config.window_frames
        return 81 if self.codec.temporal_factor > 1 else 17

    def model_size(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) the model runs at: the input's aspect ratio at `sample_size`'s area (the native
        resolution of a model trained at one size), or the input size itself, rounded to the size multiple."""
        m = self.size_multiple
        if self.config.sample_size:
            native_h, native_w = self.config.sample_size
            scale = (native_h * native_w / (height * width)) ** 0.5
            height, width = height * scale, width * scale
        return max(m, round(height / m) * m), max(m, round(width / m) * m)

    @torch.no_grad()
    def encode_prompt(self, prompt: str | list[str], device) -> torch.Tensor:
        """UMT5 embeddings `(B, 512, text_dim)`, zero past each prompt's length (as diffusers' Wan pipelines)."""
        if self.text_encoder is None or self.tokenizer is None:
            raise FreePropInputError(
                "this model has no text encoder; drop --prompt or load a pipeline with one"
            )
        prompt = [prompt] if isinstance(prompt, str) else list(prompt)
        tokens = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=TEXT_TOKENS,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = (
            tokens.input_ids.to(self.text_encoder.device),
            tokens.attention_mask.to(self.text_encoder.device),
        )
        hidden = self.text_encoder(ids, mask).last_hidden_state.to(device)  # (B, 512, text_dim)
        return hidden * mask.to(device)[..., None].to(hidden.dtype)

    @torch.no_grad()
    def encode_image(self, image: np.ndarray, device) -> torch.Tensor:
        """CLIP penultimate hidden states of the first frame `(1, 257, image_dim)` (Wan I2V / Fun-Control)."""
        inputs = self.image_processor(images=Image.fromarray(image), return_tensors="pt").to(
            self.image_encoder.device
        )
        return self.image_encoder(**inputs, output_hidden_states=True).hidden_states[-2].to(device)

    def load_adapter(
        self,
        path: str | os.PathLike,
        fuse: bool = False,
        adapter_name: str = "freeprop",
        head_map: dict | None = None,
    ) -> None:
        """Load a fine-tuning result written by `save_adapter` (a folder), or a bare LoRA `.safetensors` file.

        The head map saved with the adapter is installed too (`head_map` overrides it)."""
        from freeprop.models.loading import read_safetensors

        path = Path(path)
        if not path.exists():
            raise FreePropInputError(f"{path}: no such LoRA file or folder; check --lora")
        lora = path / LORA_WEIGHTS if path.is_dir() else path
        trained = path / TRAINED_MODULES if path.is_dir() else None
        if not lora.is_file() and not (trained and trained.is_file()):
            raise FreePropInputError(f"{path}: holds neither {LORA_WEIGHTS} nor {TRAINED_MODULES}")
        if trained is not None and trained.is_file():
            state = read_safetensors(trained)
            own = self.transformer.state_dict()
            bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
            if bad or not all(k.startswith(TRAINED_MODULE_PREFIXES) for k in state):
                raise FreePropInputError(
                    f"{trained}: does not fit this model (keys {bad[:3]}); was it trained on it?"
                )
            self.transformer.load_state_dict(state, strict=False)
        config = path / ADAPTER_CONFIG if path.is_dir() else None
        if head_map is None and config is not None and config.is_file():
            try:
                head_map = json.loads(config.read_text()).get("head_map")
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
                raise FreePropInputError(f"{config}: not an adapter config ({err})") from None
        if head_map is not None:
            try:
                self.transformer.set_head_map(head_map)
            except ValueError as err:
                raise FreePropInputError(f"{config or path}: head map does not fit this model ({err})") from None
        if lora.is_file():
            self._check_lora_fits(lora, read_safetensors(lora))  # before diffusers (which only warns)
            try:
                self.load_lora_weights(str(lora), adapter_name=adapter_name)
            except (ValueError, KeyError, RuntimeError) as err:
                first = (str(err).strip().splitlines() or [""])[0][:160]
                raise FreePropInputError(f"{lora}: not a LoRA for this model ({first})") from None
            if fuse:
                self.fuse_lora(components=["transformer"])

    def _check_lora_fits(self, file: Path, state: dict) -> None:
        """Every LoRA matrix must target a linear layer of this transformer, with its shapes."""
        modules = dict(self.transformer.named_modules())
        for key, tensor in state.items():
            name = key.removeprefix("transformer.")
            path, _, kind = name.rpartition(".lora_")
            target = modules.get(path)
            expected = None
            if target is not None and hasattr(target, "in_features"):
                expected = tensor.shape[1] == target.in_features if kind.startswith("A") else (
                    tensor.shape[0] == target.out_features)
            if not expected:
                raise FreePropInputError(f"{file}: not a LoRA for this model ({key} fits no layer of it)")

    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        source_video,
        first_frame,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        num_frames: int | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = SAMPLING.guidance_scale,
        generator: torch.Generator | None = None,
        output_type: str = "np",
        window_frames: int | None = None,
        overlap: int = SAMPLING.overlap,
        replace_first_frame: bool = True,
        residual_upscale: bool | None = None,
        callback: Callable[[int, int], None] | None = None,
        num_samples: int | None = None,
        identity_correction: float | None = None,
        correction_gate: float | None = None,
    ) -> FreePropPipelineOutput:
        """Propagate `first_frame`'s edit through `source_video` (all in memory; `stream` for long videos).

        Args:
            source_video: uint8 `[F, H, W, 3]`, a `Video`, a list of PIL images, or `[F, 3, H, W]` in [0, 1].
            first_frame: the edited frame 0, uint8 `[H, W, 3]` or PIL; same aspect ratio as the video (±1 %).
            prompt / negative_prompt: optional text (needs a text encoder); enables classifier-free guidance.
            num_frames: output frames (default: all source frames).
            height, width: output size (default: the source's).
            num_inference_steps: sampling steps (default: the pipeline's `num_inference_steps`, else 30).
            window_frames, overlap: long-video windows (default window: `config.window_frames` or 81/17).
            replace_first_frame: put `first_frame` itself at output frame 0 (it is the user's edit).
            residual_upscale: map the result to the output size as source + upsampled (output − source)
                instead of upsampling the output itself, so unedited regions keep the full-resolution
                source detail; default: on when the output is larger than the model's size.
            callback: called as `callback(step, total_steps)` after each denoising step.
            num_samples: average this many samples (independent noise) per window (default: the pipeline's
                `num_samples`, else 1): an estimate of the posterior mean, steadier and closer to the truth
                in PSNR than one sample, at `num_samples` times the cost.
            identity_correction: c in [0, 1] (default: the pipeline's `identity_correction`, else 0). Each
                sample is also generated, from the same noise, with the window's unedited first frame; the
                output is out(edit) − c·(out(unedited) − source). What the model changes in a video whose
                first frame was not edited is its own error (the truth is the source), and it makes much the
                same error with the edit wherever the edit is absent; twice the cost. Ours, beyond the paper.
            correction_gate: τ in grey levels (default: the pipeline's `correction_gate`, else 0 = off): the
                correction fades out where the edit moved the output by up to τ (`gated_correction`).
        """
        frames = _as_frames(source_video)
        num_frames = num_frames or len(frames)
        if num_frames > len(frames):
            raise FreePropInputError(f"asked for {num_frames} frames but the video has {len(frames)}")
        alphas, timings = [], {}
        result = np.stack(list(self.stream(
            iter(frames[:num_frames]), first_frame, num_frames, prompt, negative_prompt, height, width,
            num_inference_steps, guidance_scale, generator, window_frames, overlap, replace_first_frame,
            residual_upscale, callback, alphas, timings, num_samples, identity_correction, correction_gate,
        )))  # fmt: skip
        if output_type == "pt":
            result = torch.from_numpy(result).permute(0, 3, 1, 2).float() / 255
        elif output_type == "pil":
            result = [Image.fromarray(f) for f in result]
        elif output_type != "np":
            raise FreePropInputError(f"output_type must be 'np', 'pt' or 'pil', got {output_type!r}")
        return FreePropPipelineOutput(frames=result, alphas=alphas, timings=timings)

    @torch.no_grad()
    def stream(
        self,
        source_frames: Iterable[np.ndarray],
        first_frame,
        num_frames: int | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float = SAMPLING.guidance_scale,
        generator: torch.Generator | None = None,
        window_frames: int | None = None,
        overlap: int = SAMPLING.overlap,
        replace_first_frame: bool = True,
        residual_upscale: bool | None = None,
        callback: Callable[[int, int], None] | None = None,
        alphas: list | None = None,
        timings: dict | None = None,
        num_samples: int | None = None,
        identity_correction: float | None = None,
        correction_gate: float | None = None,
    ) -> Iterator[np.ndarray]:
        """`__call__` one frame at a time: uint8 `[H, W, 3]` source frames in, output frames out, in order,
        as soon as no later window can change them. Memory holds one window of frames, not the video.
        `num_frames`, when known, sizes the progress bar; `alphas` / `timings` are filled as windows run."""
        # 1. Frame 0 of the source and the edit fix the sizes; check them.
        alphas, timings = alphas if alphas is not None else [], timings if timings is not None else {}
        num_inference_steps = num_inference_steps or self.config.get("num_inference_steps") or SAMPLING.steps
        num_samples = num_samples or self.config.get("num_samples") or 1
        if identity_correction is None:
            identity_correction = self.config.get("identity_correction") or 0.0
        if not 0 <= identity_correction <= 1:
            raise FreePropInputError(f"identity correction must be in [0, 1], got {identity_correction}")
        if correction_gate is None:
            correction_gate = self.config.get("correction_gate") or 0.0
        if correction_gate < 0:
            raise FreePropInputError(f"correction gate must be ≥ 0 grey levels (0: off), got {correction_gate}")
        if num_samples < 1:
            raise FreePropInputError(f"num_samples must be at least 1, got {num_samples}")
        reader = _Frames(source_frames)
        edit = _as_image(first_frame)
        src_h, src_w = reader.shape
        ratio_video, ratio_edit = src_w / src_h, edit.shape[1] / edit.shape[0]
        if abs(ratio_edit / ratio_video - 1) > 0.01:
            raise FreePropInputError(
                f"first frame is {edit.shape[0]}x{edit.shape[1]} (HEIGHTxWIDTH, aspect {ratio_edit:.3f}) but the "
                f"video is {src_h}x{src_w} (aspect {ratio_video:.3f}); export the edited frame at the video's size"
            )
        out_h, out_w = height or src_h, width or src_w
        codec = self.codec
        window = window_frames or self.default_window()
        if (window - 1) % codec.temporal_factor:
            raise FreePropInputError(f"window of {window} frames: this codec needs k·{codec.temporal_factor}+1")
        model_h, model_w = self.model_size(src_h, src_w)
        if model_h % self.size_multiple or model_w % self.size_multiple:
            raise FreePropInputError(f"model size {model_h}x{model_w} is not a multiple of {self.size_multiple}")
        if self.fixed_shift is None:  # Wan2.1: shift 3.0 at 480p, 5.0 at 720p
            self.scheduler = with_shift(self.scheduler, shift_for_size(model_h, model_w))
        device = self._execution_device
        with _timed(timings, "resize", device):
            edit_small = _resize(edit, model_h, model_w)
        reader.resize_to = (model_h, model_w)
        reader.fill(window + 1)
        if reader.done and reader.count < window:  # a short clip: one window sized to the clip (k·t + 1 frames)
            t = codec.temporal_factor
            window = (reader.count - 1 + t - 1) // t * t + 1
        check_overlap(window, overlap)

        # 2. Conditions shared by all windows: text (with CFG) and CLIP image tokens.
        text, image = self._conditions(prompt, negative_prompt, guidance_scale, edit_small, device)
        guidance = guidance_scale if text.shape[0] == 2 else None

        # 3. Windows, each conditioned on the frame its predecessor generated at its start; frames no later
        #    window touches leave at once, mapped to the output size.
        upscaling = out_h * out_w > model_h * model_w
        as_residual = residual_upscale if residual_upscale is not None else upscaling
        steps = num_inference_steps * num_samples * (2 if identity_correction else 1)
        total = len(window_starts(num_frames, window, overlap)) * steps if num_frames else None
        output: dict[int, np.ndarray] = {}  # model-size output frames not yet sent, by index
        with self.progress_bar(total=total) if total else _open_bar(self) as bar:

            def step_done():
                bar.update()
                if callback is not None:
                    callback(bar.n, total or bar.n)

            start, emitted = 0, 0
            while True:
                reader.fill(start + window + 1)  # one frame ahead: is this window the last?
                last = reader.done and reader.count <= start + window
                video, alpha = self._denoise_window(
                    reader.window(start, window), edit_small if start == 0 else output[start], text, image, codec,
                    (num_inference_steps, num_samples, identity_correction, correction_gate), guidance, generator, step_done, timings,
                )  # fmt: skip
                alphas.append(alpha)
                if start:  # cross-fade the frames both windows produced
                    blend = np.arange(overlap) / overlap
                    for j in range(overlap):
                        old = output[start + j].astype(np.float32)
                        output[start + j] = np.round(old * (1 - blend[j]) + video[j] * blend[j]).astype(np.uint8)
                for j in range(overlap if start else 0, window):
                    output[start + j] = video[j]
                final = reader.count if last else start + window - overlap
                for index in range(emitted, final):
                    with _timed(timings, "resize", device):
                        frame = self._to_output(output.pop(index), *reader.pop(index), (out_h, out_w), as_residual)
                    yield _resize(edit, out_h, out_w) if index == 0 and replace_first_frame else frame
                emitted = final
                if last:
                    break
                start += window - overlap
        self.maybe_free_model_hooks()

    def _conditions(self, prompt, negative_prompt, guidance_scale, edit_small, device):
        """Text tokens (negative and positive stacked under classifier-free guidance) and CLIP image tokens."""
        dtype = self.transformer.dtype
        if prompt is not None:
            text = self.encode_prompt(prompt, device)
            if guidance_scale > 1.0:
                text = torch.cat([self.encode_prompt(negative_prompt or "", device), text])
        elif negative_prompt is not None:
            raise FreePropInputError("negative_prompt needs a prompt")
        else:
            text = torch.zeros(1, TEXT_TOKENS, self.transformer.config.text_dim, device=device)
        image = None
        if self.transformer.config.image_dim:
            if self.image_encoder is not None:
                image = self.encode_image(edit_small, device)
            else:  # no CLIP: zeros, as VideoX-Fun does when no clip image is given
                image = torch.zeros(1, IMAGE_TOKENS, self.transformer.config.image_dim, device=device)
            image = image.repeat(text.shape[0], 1, 1).to(dtype)
        return text.to(dtype), image

    @staticmethod
    def _to_output(small_out, full_src, small_src, size, as_residual) -> np.ndarray:
        """One model-size output frame at the output size: resized, or (residual upscale) the
        full-resolution source plus the upsampled (output − source), so unedited regions keep the
        source's own detail."""
        out_h, out_w = size
        if not as_residual:
            return _resize(small_out, out_h, out_w)
        full = _resize(full_src, out_h, out_w).astype(np.float32)
        residual = small_out.astype(np.float32) - small_src
        up = cv2.resize(residual, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
        return np.clip(np.round(full + up), 0, 255).astype(np.uint8)

    def _denoise_window(
        self, source, first, text, image, codec, sampling, guidance, generator, step_done, timings
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """One window: uint8 source `[W, h, w, 3]` + first frame `[h, w, 3]` → uint8 output `[W, h, w, 3]`, (α_S, α_T).
        `sampling` = (ODE steps, samples, identity correction c, gate τ): the samples' final latents are averaged
        (ours, beyond the paper: the mean of independent samples estimates the posterior mean, which a few-step
        sampler's noise would otherwise make flicker from frame to frame; measured in docs/model.md); with
        c > 0 each sample is also drawn from the unedited first frame and c times its change is taken off
        (with τ > 0 only where the edit did not move the output: `gated_correction`, in pixels)."""
        device, dtype = self._execution_device, self.transformer.dtype
        steps, samples, correction, gate = sampling
        # a. Latents of the source and of the first frames (one-frame videos): edited, and unedited if needed.
        with _timed(timings, "encode", device):
            pixels = to_tensor(source).to(device)  # (3, F, h, w) in [-1, 1]
            z_src = codec.encode(pixels[None]).to(dtype)  # (1, C, F', h, w)
            firsts = [first, source[0]] if correction else [first]
            z_firsts = [codec.encode(to_tensor(f[None])[None].to(device)).to(dtype) for f in firsts]  # (1, C, 1, h, w)
        shape = (1, codec.latent_channels, latent_num_frames(codec, len(source)), *z_src.shape[-2:])
        batch = text.shape[0]
        alpha_s, alpha_t = self.transformer.predict_alphas(z_src)
        alpha_pair = (alpha_s.repeat(batch), alpha_t.repeat(batch))

        # b. Integrate the flow ODE, once per sample and first frame (the same noise for both first frames).
        totals = [torch.zeros(shape, device=device) for _ in firsts]
        with _timed(timings, "denoise", device):
            for _ in range(samples):
                noise = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32).to(device)
                for total, z_first in zip(totals, z_firsts):
                    latents = noise
                    self.scheduler.set_timesteps(steps, device=device)
                    for t in self.scheduler.timesteps:
                        x = build_ffp_input(latents.to(dtype), z_src, z_first, self.transformer.mask_channels)
                        x = x.repeat(batch, 1, 1, 1, 1)  # (B, 3C + M, F', h, w); B = 2 under CFG
                        output = self.transformer(
                            x, t.expand(batch).to(device), text, image, alphas=alpha_pair
                        ).sample
                        velocity = self.transformer.velocity(output.float(), latents, t.float() / 1000)
                        if guidance is not None:
                            uncond, cond = velocity.chunk(2)
                            velocity = uncond + guidance * (cond - uncond)
                        latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                        step_done()
                    total += latents

        # c. Decode (a residual model generated z_tgt − z_src: add the source back), less c × the change the
        #    model makes with the unedited first frame.
        with _timed(timings, "decode", device):
            outs = [self.transformer.output_latents(total / samples, z_src.float()) for total in totals]
            if correction and gate:  # the gate is read in pixels: decode both outputs
                edited, unedited = (codec.decode(out.to(dtype))[0, :, : len(source)].float() for out in outs)
                share = edited_share(first, source[0], gate)
                video = gated_correction(edited, unedited, pixels, share, correction, gate)
            else:
                latents = outs[0] - correction * (outs[1] - z_src.float()) if correction else outs[0]
                video = codec.decode(latents.to(dtype))[0]  # (3, F, h, w) in [-1, 1]
        return from_tensor(video)[: len(source)], (float(alpha_s[0]), float(alpha_t[0]))
