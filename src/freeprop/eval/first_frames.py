"""Edited first frames for benchmark cases that ship none, made with Qwen-Image-Edit (paper §5.1).

The FFP paper: "Qwen-Edit [31] is leveraged to generate the edited first frame for these videos."
EditVerseBench ships an edited first frame only for its Propagation cases and UNICBench only in
`Propagation/`; every other case needs one before a first-frame propagation method can run.

`edit_first_frames` takes frame 0 of each such case's source, edits it with diffusers'
`QwenImageEditPipeline` using the case's instruction, resizes the result back to the source's size
(the frame the propagation model is given) and writes `ROOT/first_frames/<id>.png` — the folder the
benchmark loaders read (`eval/benchmarks.py`). Existing files are kept, so a rerun does the rest; each
file is written atomically, with `<id>.json` beside it recording the model, the prompt and the
settings that made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from freeprop.errors import FreePropInputError
from freeprop.eval.benchmarks import FIRST_FRAMES, Bench, Case
from freeprop.video import read_video, resize_cover_crop, write_image, write_json


@dataclass(frozen=True)
class FirstFrameSettings:
    """How each first frame is edited. Defaults: the Qwen-Image-Edit model card's example
    (50 steps, true CFG 4.0 with the negative prompt " "); the paper gives no settings."""

    steps: int = 50
    true_cfg_scale: float = 4.0
    negative_prompt: str = " "
    seed: int = 0  # the same seed for every case: a rerun reproduces each file
    prompt: str = "{instruction}"  # fields: {instruction}, {target_prompt}

    def __post_init__(self):
        if self.steps < 1:
            raise FreePropInputError(f"steps must be ≥ 1 (got {self.steps})")
        if self.true_cfg_scale < 1:
            raise FreePropInputError(f"true_cfg_scale must be ≥ 1 (got {self.true_cfg_scale})")
        try:
            self.prompt.format(instruction="", target_prompt="")
        except (KeyError, IndexError, ValueError) as err:
            raise FreePropInputError(f"prompt template {self.prompt!r}: use {{instruction}} / {{target_prompt}} ({err})") from None

    def prompt_for(self, case: Case) -> str:
        return self.prompt.format(instruction=case.instruction, target_prompt=case.target_prompt).strip()


def load_qwen_image_edit(path: str, device: str = "cpu", dtype=None):
    """diffusers' `QwenImageEditPipeline` from a local folder (e.g. a download of Qwen/Qwen-Image-Edit)."""
    from diffusers import QwenImageEditPipeline

    from freeprop.hub import load_pretrained

    try:
        pipe = load_pretrained(QwenImageEditPipeline, path, torch_dtype=dtype, local_files_only=True)
    except ImportError as err:  # Qwen2VLProcessor's video processor needs torchvision
        raise FreePropInputError(f"cannot load Qwen-Image-Edit from {path}: {err} (pip install torchvision)") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def cases_needing_first_frames(bench: Bench) -> tuple[list[Case], list[str]]:
    """The cases without an edited first frame whose source can be read, and the ids left out (no source)."""
    todo, no_source = [], []
    for case in bench.cases:
        if case.first_frame is not None:
            continue
        if isinstance(case.source, Path) and not case.source.is_file():
            no_source.append(case.case_id)
        else:
            todo.append(case)
    return todo, no_source


def edit_first_frame(pipe, case: Case, settings: FirstFrameSettings) -> np.ndarray:
    """Frame 0 of `case.source` edited by `pipe` → uint8 [H, W, 3] at the source's size."""
    import torch
    from PIL import Image

    frame0 = case.source[0] if isinstance(case.source, np.ndarray) else read_video(case.source, max_frames=1).frames[0]
    generator = torch.Generator().manual_seed(settings.seed)
    edited = pipe(
        image=Image.fromarray(frame0),
        prompt=settings.prompt_for(case),
        negative_prompt=settings.negative_prompt,
        true_cfg_scale=settings.true_cfg_scale,
        num_inference_steps=settings.steps,
        generator=generator,
    ).images[0]  # at Qwen-Image-Edit's own ~1 MP size, the source's aspect ratio
    return resize_cover_crop(np.asarray(edited.convert("RGB"))[None], *frame0.shape[:2])[0][0]


def edit_first_frames(
    bench: Bench, pipe, settings: FirstFrameSettings = FirstFrameSettings(), model: str = "", progress: bool = True
) -> tuple[list[Path], list[str]]:
    """Write `ROOT/first_frames/<id>.png` for every case lacking one; returns (files written, ids without a source).
    Cases are split across processes (`accelerate launch`)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    folder = bench.root / FIRST_FRAMES
    todo, no_source = cases_needing_first_frames(bench)
    todo = [case for case in todo if not (folder / f"{case.case_id}.png").is_file()]
    if todo:
        folder.mkdir(exist_ok=True)
    state = PartialState()
    written = []
    with state.split_between_processes(todo) as mine:
        for case in tqdm(mine, desc="first frames", disable=not progress or not state.is_local_main_process):
            path = write_image(folder / f"{case.case_id}.png", edit_first_frame(pipe, case, settings))
            written.append(path)
            write_json(path.with_suffix(".json"), {"model": model, **asdict(settings), "prompt": settings.prompt_for(case)})
    state.wait_for_everyone()
    return written, no_source
