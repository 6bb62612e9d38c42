"""The last stage: a finished sample → its shard members, encoded in the worker.

Encoding a pair (three H.264 videos of 81 frames at 720p) costs seconds; done by the build's driver it
would serialise the whole cluster's output through one process. `Pack` runs it in the stage's workers
(`freeprop.data.pairs.encode_pair`) and leaves the members, the index row and the hashes dedup compares
in the sample's work folder (`save_packed`). The driver reads only the row and hashes; the shards are
written from those folders by the workers too (`PairWriter.add_packed`, `write_packed_shard`).
"""

from __future__ import annotations

import json

import numpy as np

from freeprop.data.stages.base import Resources, Stage


def to_pair(sample: dict[str, str]):
    """A finished sample → `Pair` (source and edit at the same size and length; mask = VACE's region)."""
    from freeprop.data.pairs import Pair
    from freeprop.data.stages.media import load_masks, load_video

    source, target = load_video(sample["source_video"]), load_video(sample["edited_video"])
    if source.shape != target.shape:
        raise ValueError(f"edit {target.shape} and source {source.shape} differ in shape")
    mask = load_masks(sample["vace_mask"]).astype(np.uint8) * 255 if sample["vace_mask"] else None
    task = sample["final_task"] or sample["task"]
    meta = {k: sample[k] for k in ("source", "content_image", "style_image", "object", "box") if sample[k]}
    if sample["frame_indices"]:
        meta["frame_indices"] = json.loads(sample["frame_indices"])
    return Pair(
        sample_id=sample["sample_id"], source=source, target=target, task=task, track=sample["track"],
        fps=float(sample["fps"] or 16), mask=mask, instruction=sample["instruction"],
        source_caption=sample["caption"] or sample["cinematic_caption"],
        target_caption=sample["removal_caption"] or sample["style_caption"] or sample["caption"],
        split=sample["split"], meta=meta,
    )  # fmt: skip


def dhash(frame: np.ndarray) -> int:
    """64-bit difference hash of a frame (grey 9×8, adjacent-pixel comparisons)."""
    import cv2

    grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (9, 8), interpolation=cv2.INTER_AREA)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def pair_hashes(source: np.ndarray, target: np.ndarray) -> list[int]:
    picks = sorted({0, len(source) // 2, len(source) - 1})
    return [dhash(source[i]) for i in picks] + [dhash(target[i]) for i in picks]


class Pack(Stage):
    name = "pack"
    requires = ("source_video", "edited_video")
    provides = ("packed",)
    resources = Resources(cpus=1)
    thread_safe = True  # files only

    def __init__(self, crf: int | None = None):
        from freeprop.data.pairs import PAIR_CRF

        self.crf = PAIR_CRF if crf is None else crf

    def process(self, sample):
        from freeprop.data.pairs import PACKED_RECORD, encode_pair, save_packed

        out = self.work_dir(sample) / f"packed-{sample['sample_id']}"
        if not (out / PACKED_RECORD).is_file():
            pair = to_pair(sample)
            save_packed(out, *encode_pair(pair, self.crf), pair_hashes(pair.source, pair.target))
        return sample | {"packed": str(out)}
