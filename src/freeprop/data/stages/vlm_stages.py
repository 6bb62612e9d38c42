"""VLM stages (paper §3.1, §3.3, §7.1) on Qwen2.5-VL or any `freeprop.vlm` backend.

- `IdentifyObject` — the paper's object-identification prompt on the first frame → `object`;
- `Captions` — the paper's original caption (on first / middle / last frames) and removal caption
  (from the original caption and the object) → `caption`, `removal_caption`;
- `DiscriminateTask` — the paper's swap-vs-modification prompt on first / middle / last frames of the
  source then the edited video → `final_task` (swap samples only);
- `QualityFilter` and `Verify` — the §3.3 screening (our prompts, see `data/prompts.py`): a "no"
  filters the sample (recorded, never deleted);
- `CinematicCaption`, `StyleCaption` — the global track's captions (§3.2).

Replies must be strict JSON with the prompt's key; each stage retries `retries` times and then fails
the sample with the last reply. Results are cached in the sample's work folder, so a resumed job
does not ask again.
"""

from __future__ import annotations

from freeprop.data import prompts
from freeprop.data.stages.base import Resources, SampleFiltered, Stage, StageError
from freeprop.data.stages.media import key_frames, load_video
from freeprop.video import read_image
from freeprop.vlm import ask_json, make_vlm


class VLMStage(Stage):
    @property
    def resources(self) -> Resources:
        """A GPU only for a VLM run in-process (`qwen:`); a served one (`openai:`, e.g. Qwen2.5-VL-72B
        on vLLM over 4–8 GPUs) needs none in the worker, whose requests then wait on the network."""
        in_process = isinstance(self.vlm, str) and self.vlm.startswith("qwen:")
        return Resources(cpus=1, gpus=1 if in_process else 0)

    models = {"vlm": "vlm"}  # every VLM stage naming the same VLM shares one copy

    @property
    def thread_safe(self) -> bool:
        """A served VLM takes many requests at once (threads of the local executor, a Ray actor's batch);
        one loaded in-process runs one sample at a time."""
        return isinstance(self.vlm, str) and self.vlm.startswith("openai:")

    def __init__(self, vlm="stub:{}", retries: int = 3, device: str = "cpu", dtype: str | None = None):
        self.vlm, self.retries, self.device, self.dtype = vlm, retries, device, dtype

    def check(self) -> None:
        if isinstance(self.vlm, str) and self.vlm.startswith("qwen:"):
            from freeprop.hub import check_available

            check_available(self.vlm[5:], "models.vlm")

    def load(self, attr: str, spec: str):
        return make_vlm(spec, self.device, self.torch_dtype(), flag="vlm")

    def ask(self, sample, cache: str, images, prompt_name: str, **fields) -> dict:
        prompt = getattr(prompts, prompt_name).format(**fields)
        keys = prompts.KEYS[prompt_name]
        model = self.vlm if isinstance(self.vlm, str) else getattr(self.vlm, "name", type(self.vlm).__name__)
        key = self.input_key(model, prompt, *images)  # one content image, several styles: several answers
        return self.cached_json(
            self.work_dir(sample) / f"{cache}-{key}.json",
            lambda: ask_json(self.model("vlm"), images, prompt, keys, self.retries),
        )


class IdentifyObject(VLMStage):
    name = "identify_object"
    requires = ("source_video",)
    provides = ("object",)
    tracks = ("local",)

    def process(self, sample):
        first = load_video(sample["source_video"])[0]
        reply = self.ask(sample, "object", [first], "OBJECT_IDENTIFICATION")
        return sample | {"object": reply["Object"].strip().lower()}


class Captions(VLMStage):
    name = "captions"
    requires = ("source_video", "object")
    provides = ("caption", "removal_caption")
    tracks = ("local",)

    def process(self, sample):
        frames = key_frames(load_video(sample["source_video"]))
        caption = sample["caption_in"] or self.ask(sample, "caption", frames, "ORIGINAL_CAPTION")["Caption"]
        removal = ""
        if sample["task"] == "removal":
            reply = self.ask(
                sample, "removal_caption", [], "REMOVAL_CAPTION", caption=caption, object=sample["object"]
            )
            removal = reply["Remove_Caption"].strip()
        return sample | {"caption": caption.strip(), "removal_caption": removal}


class DiscriminateTask(VLMStage):
    name = "discriminate_task"
    requires = ("source_video", "edited_video")
    provides = ("final_task",)
    tracks = ("local",)
    tasks = ("swap",)

    def process(self, sample):
        images = key_frames(load_video(sample["source_video"])) + key_frames(
            load_video(sample["edited_video"])
        )
        task = self.ask(sample, "task", images, "TASK_DISCRIMINATION")["Task"].strip().lower()
        if task not in ("swap", "modification"):
            raise ValueError(f"task discrimination answered {task!r}")
        return sample | {"final_task": task}


class _YesNoCheck(VLMStage):
    """A yes/no VLM verdict on key frames of the source then the edit; "no" filters the sample."""

    requires = ("edited_video", "instruction")
    prompt_name, key, cache = "", "", ""

    def process(self, sample):
        source = sample["source_video"]
        images = key_frames(load_video(source)) if source else []
        images += key_frames(load_video(sample["edited_video"]))
        fields = dict(edit=sample["instruction"], instruction=sample["instruction"])
        verdict = self.ask(sample, f"{self.cache}-{sample['task']}", images, self.prompt_name, **fields)[
            self.key
        ]
        if verdict.strip().lower() != "yes":
            raise SampleFiltered(f"{self.name}: no")
        return sample | {self.provides[0]: "yes"}


class QualityFilter(_YesNoCheck):
    name = "quality_filter"
    provides = ("quality",)
    prompt_name, key, cache = "QUALITY_FILTER", "Pass", "quality"


class Verify(_YesNoCheck):
    name = "verify"
    provides = ("verified",)
    prompt_name, key, cache = "SEMANTIC_VERIFICATION", "Match", "verify"


class CinematicCaption(VLMStage):
    name = "cinematic_caption"
    requires = ("content_image", "style_image")
    provides = ("cinematic_caption",)
    tracks = ("global",)

    def __init__(self, *args, min_side: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_side = min_side

    def process(self, sample):
        content, style = read_image(sample["content_image"]), read_image(sample["style_image"])
        for name, image in (("content", content), ("style", style)):
            if min(image.shape[:2]) < self.min_side:
                raise StageError(
                    f"{name} image {image.shape[0]}x{image.shape[1]} (HEIGHTxWIDTH) is smaller than {self.min_side} px"
                )
        reply = self.ask(sample, "cinematic_caption", [content], "CINEMATIC_CAPTION")
        return sample | {"cinematic_caption": reply["Caption"].strip()}


class StyleCaption(VLMStage):
    name = "style_caption"
    requires = ("style_image", "source_video")
    provides = ("style_caption",)
    tracks = ("global",)

    def process(self, sample):
        images = [read_image(sample["style_image"])] + key_frames(load_video(sample["source_video"]))
        reply = self.ask(sample, "style_caption", images, "STYLE_CAPTION")
        return sample | {"style_caption": reply["Style_Caption"].strip()}
