"""Stage 4 (local track): Grounded-SAM2 — a Grounding DINO box for the object on frame 0, then SAM2
video propagation of that box through every frame (paper §3.1), both through transformers.

- `GroundingDinoDetector` (`AutoModelForZeroShotObjectDetection` + its processor): the text query is
  the object phrase lower-cased and ending in "." (Grounding DINO's convention); the best box above
  `box_threshold` / `text_threshold` (defaults 0.35 / 0.25, Grounded-SAM-2's demo uses 0.4 / 0.3) wins.
- `Sam2VideoTracker` (`Sam2VideoModel` + `Sam2VideoProcessor`): an inference session over the
  frames, the box added on frame 0 for object 1, masks from `propagate_in_video_iterator`,
  post-processed to the frame size and binarised.

Both sit behind one-method interfaces (`detect(image, phrase)`, `track(frames, box)`) so tests can
inject tiny real models or scripted ones. Ours, not the paper's (it names no such rules): no box →
the sample fails ("object not found"); a mask empty on frame 0 fails it too; masks covering
> `max_coverage` of a frame are filtered (too large for a local edit).
"""

from __future__ import annotations

import json

import numpy as np

from freeprop.data.masks import is_large
from freeprop.data.stages.base import Resources, SampleFiltered, Stage, StageError
from freeprop.data.stages.media import load_video, save_masks

GROUNDING_DINO = "IDEA-Research/grounding-dino-base"
SAM2 = "facebook/sam2.1-hiera-large"


class GroundingDinoDetector:
    def __init__(self, model, processor, box_threshold: float = 0.35, text_threshold: float = 0.25):
        self.model, self.processor = model.eval(), processor
        self.box_threshold, self.text_threshold = box_threshold, text_threshold

    @classmethod
    def from_pretrained(cls, path: str = GROUNDING_DINO, device="cpu", dtype=None, **kwargs):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        from freeprop.hub import load_pretrained

        model = load_pretrained(AutoModelForZeroShotObjectDetection, path, device, dtype)
        return cls(model, load_pretrained(AutoProcessor, path), **kwargs)

    def detect(self, image: np.ndarray, phrase: str) -> tuple[list[float], float] | None:
        """Best xyxy pixel box for `phrase` and its score, or None."""
        import torch

        query = phrase.strip().lower().rstrip(".") + "."
        inputs = self.processor(images=image, text=query, return_tensors="pt")
        dtype, device = self.model.dtype, self.model.device
        inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}
        with torch.no_grad():  # pixels in the model's dtype (bf16 in the shipped config), boxes scored in fp32
            outputs = self.model(**inputs)
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[image.shape[:2]],
        )[0]
        if len(result["scores"]) == 0:
            return None
        best = int(result["scores"].argmax())
        return [float(v) for v in result["boxes"][best]], float(result["scores"][best])


class Sam2VideoTracker:
    def __init__(self, model, processor):
        self.model, self.processor = model.eval(), processor

    @classmethod
    def from_pretrained(cls, path: str = SAM2, device="cpu", dtype=None):
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        from freeprop.hub import load_pretrained

        return cls(
            load_pretrained(Sam2VideoModel, path, device, dtype), load_pretrained(Sam2VideoProcessor, path)
        )

    def track(self, frames: np.ndarray, box: list[float]) -> np.ndarray:
        """Boolean masks [F, H, W] of the object in `box` on frame 0."""
        import torch

        height, width = frames.shape[1:3]
        session = self.processor.init_video_session(  # the session's own dtype defaults to fp32
            video=list(frames), inference_device=self.model.device, dtype=self.model.dtype
        )
        self.processor.add_inputs_to_inference_session(
            inference_session=session, frame_idx=0, obj_ids=1, input_boxes=[[box]]
        )
        masks = np.zeros((len(frames), height, width), bool)
        with torch.no_grad():
            for out in self.model.propagate_in_video_iterator(inference_session=session, start_frame_idx=0):
                logits = out.pred_masks.float()
                mask = self.processor.post_process_masks([logits], [[height, width]], binarize=True)[0]
                masks[out.frame_idx] = mask[0, 0].cpu().numpy().astype(bool)
        return masks


class GroundAndTrack(Stage):
    name = "ground_and_track"
    requires = ("source_video", "object")
    provides = ("box", "masks")
    tracks = ("local",)
    resources = Resources(cpus=1, gpus=0.5)  # Grounding DINO-B + SAM2-L share a GPU comfortably
    models = {"detector": "grounding-dino", "tracker": "sam2-video"}

    def __init__(
        self,
        detector=GROUNDING_DINO,
        tracker=SAM2,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        max_coverage: float = 0.9,
        device: str = "cpu",
        dtype: str | None = None,
    ):
        self.detector, self.tracker = detector, tracker
        self.box_threshold, self.text_threshold, self.max_coverage = (
            box_threshold,
            text_threshold,
            max_coverage,
        )
        self.device, self.dtype = device, dtype

    def check(self) -> None:
        from freeprop.hub import check_available

        for key, model in (("models.detector", self.detector), ("models.tracker", self.tracker)):
            if isinstance(model, str):
                check_available(model, key)

    def load(self, attr: str, spec: str):
        if attr == "detector":
            return GroundingDinoDetector.from_pretrained(spec, self.device, self.torch_dtype(),
                                                         box_threshold=self.box_threshold, text_threshold=self.text_threshold)  # fmt: skip
        return Sam2VideoTracker.from_pretrained(spec, self.device, self.torch_dtype())

    def model_options(self, attr: str) -> tuple:
        return (self.box_threshold, self.text_threshold) if attr == "detector" else ()

    def process(self, sample):
        work = self.work_dir(sample)
        masks_path = work / "masks.npz"
        frames = load_video(sample["source_video"])
        found = self.cached_json(work / "box.json", lambda: self.model("detector").detect(frames[0], sample["object"]))
        if not found:
            raise StageError(f"object {sample['object']!r} not found on frame 0")
        box, score = found
        if not masks_path.is_file():
            masks = self.model("tracker").track(frames, box)
            if not masks[0].any():
                raise StageError("the tracker gave an empty mask on frame 0")
            save_masks(masks_path, masks)
        else:
            from freeprop.data.stages.media import load_masks

            masks = load_masks(str(masks_path))
        if is_large(masks, self.max_coverage):
            raise SampleFiltered(f"mask covers more than {self.max_coverage:.0%} of a frame")
        return sample | {"box": json.dumps({"xyxy": box, "score": score}), "masks": str(masks_path)}
