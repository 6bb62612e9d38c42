"""Stage 1 (local track): standardise the source video — `frames` frames at `fps`, cover-resized and
centre-cropped to `height × width` (default 81 frames, 16 fps, 720×1280; paper §3: 720p, 81 frames;
portrait sources to 1280×720 unless `keep_orientation` is off).

Keeps the source frame index of every output frame (`frame_indices`), so masks, depth and edits all
refer to the same frames. Too-short or unreadable videos fail this sample with the reason.
"""

from __future__ import annotations

import json

from freeprop.data.stages.base import Resources, Stage
from freeprop.data.stages.media import save_video
from freeprop.video import read_video, standardize


class Standardize(Stage):
    name = "standardize"
    requires = ("source",)
    provides = ("source_video", "frame_indices", "fps")
    tracks = ("local",)
    resources = Resources(cpus=1)
    thread_safe = True  # files only

    def __init__(self, frames: int = 81, fps: float = 16.0, height: int = 720, width: int = 1280,
                 keep_orientation: bool = True):  # fmt: skip
        self.frames, self.fps, self.height, self.width = frames, fps, height, width
        self.keep_orientation = keep_orientation

    def size_for(self, height: int, width: int) -> tuple[int, int]:
        """The output size for a source of `height × width`: the configured one, turned to portrait for a
        portrait source when `keep_orientation` (the paper stresses diversity; cropping a portrait clip
        to landscape would keep a third of it)."""
        turn = self.keep_orientation and (height > width) != (self.height > self.width)
        return (self.width, self.height) if turn else (self.height, self.width)

    def process(self, sample):
        out = self.work_dir(sample) / "source.mp4"
        if not out.is_file() or not sample["frame_indices"]:
            video = read_video(sample["source"])
            std = standardize(video, *self.size_for(*video.frames.shape[1:3]), self.frames, self.fps)
            save_video(out, std.frames, std.fps)
            (out.parent / "frame_indices.json").write_text(json.dumps(std.indices.tolist()))
        indices = (out.parent / "frame_indices.json").read_text()
        return sample | {"source_video": str(out), "frame_indices": indices, "fps": str(self.fps)}
