"""Video and image I/O on PyAV, plus the standardisation every model input goes through.

Conventions
- A video in memory is `uint8 [F, H, W, 3]` RGB plus its frame rate (`Video(frames, fps)`).
- Images with alpha are composited on **white** (what most image editors show behind transparency,
  so an edited first frame exported as RGBA looks the way the user saw it). Grayscale and palette
  images become RGB.
- Every write goes to a temporary file in the destination folder and is renamed into place, so a
  killed job never leaves a half-written output under the final name.
- Bad input raises `FreePropInputError` with a one-line message naming the file and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from freeprop.errors import FreePropInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
MAX_SIDE = 8192  # larger than 8K is almost surely a wrong file or a wrong argument
DEFAULT_FPS = 16.0  # Wan2.1 is trained at 16 fps; also the rate assumed for frame folders
MAX_DECODED_BYTES = 16 * 2**30  # refuse to decode more than this into memory
_CODEC_THREADS: int | None = None  # threads per decoder / encoder; None = FFmpeg's choice (every core)


def set_codec_threads(threads: int | None) -> None:
    """Limit every decoder and encoder of this process to `threads` (a Ray worker given 1 CPU must not
    run one codec thread per core of a shared node); None restores FFmpeg's own choice."""
    global _CODEC_THREADS
    _CODEC_THREADS = threads
_UMASK = os.umask(0)
os.umask(_UMASK)


class Video(NamedTuple):
    frames: np.ndarray  # uint8 [F, H, W, 3], RGB
    fps: float


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FreePropInputError(f"{path}: no such file; check the {what} path")


def _check_size(path: Path, height: int, width: int) -> None:
    if not (2 <= height <= MAX_SIDE and 2 <= width <= MAX_SIDE):
        raise FreePropInputError(
            f"{path}: frame size {height}x{width} (HEIGHTxWIDTH) is outside 2..{MAX_SIDE} pixels per side; "
            "resize it (e.g. with ffmpeg -vf scale) before editing"
        )


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG/WebP/... image as uint8 `[H, W, 3]` RGB (alpha composited on white)."""
    path = Path(path)
    _check_exists(path, "image")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)  # honour camera rotation, as viewers do
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            array = np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise FreePropInputError(
            f"{path}: not a readable image ({err.__class__.__name__}); export it as PNG or JPEG"
        ) from None
    _check_size(path, *array.shape[:2])
    return array


def probe_video(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, height, width) of a video file from its header, without decoding; frames is estimated
    from duration × rate where the container does not store a count (0 if neither is known)."""
    path = Path(path)
    if path.is_dir():
        images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            return 0, 0, 0
        height, width = read_image(min(images)).shape[:2]
        return len(images), height, width
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = stream.frames
            if not frames and stream.duration and stream.time_base and stream.average_rate:
                frames = int(float(stream.duration * stream.time_base) * float(stream.average_rate))
            return frames, stream.codec_context.height, stream.codec_context.width
    except (av.error.FFmpegError, OSError, ValueError, IndexError):
        return 0, 0, 0  # read_video reports what is wrong with the file


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class VideoStream(NamedTuple):
    """An opened video: its size and rate, and its frames decoded one at a time as they are iterated."""

    frames: Iterator[np.ndarray]  # uint8 [H, W, 3] RGB each
    fps: float
    height: int
    width: int


def open_video(path: str | os.PathLike, max_frames: int | None = None) -> VideoStream:
    """Open a video file (any container/codec FFmpeg knows) or a folder of image frames for streaming:
    memory holds one decoded frame at a time. Errors in the header are raised here, errors later in the
    file while iterating — both as one-line `FreePropInputError`s naming the file."""
    path = Path(path)
    _check_exists(path, "video")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_frames]
        if not files:
            raise FreePropInputError(f"{path}: folder holds no image frames (.png/.jpg/...); pass a video")
        height, width = read_image(files[0]).shape[:2]
        return VideoStream(_folder_frames(path, files, (height, width)), DEFAULT_FPS, height, width)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise FreePropInputError(f"{path}: this is an image, not a video; pass a video file or a frame folder")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise _unreadable(path, err, 0) from None
    if not container.streams.video:
        container.close()
        raise FreePropInputError(f"{path}: has no video stream; pass a video file")
    stream = container.streams.video[0]
    height, width = stream.codec_context.height, stream.codec_context.width
    try:
        _check_size(path, height, width)
    except FreePropInputError:
        container.close()
        raise
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return VideoStream(_decoded_frames(path, container, max_frames), float(rate) if rate else DEFAULT_FPS, height, width)


def _unreadable(path: Path, err: Exception, decoded: int) -> FreePropInputError:
    where = f"after {decoded} frames" if decoded else "at the start"
    return FreePropInputError(
        f"{path}: not a readable video ({err.__class__.__name__} {where}); "
        "check the file is complete, or re-encode it (ffmpeg -i in.ext -c:v libx264 out.mp4)"
    )


def _decoded_frames(path: Path, container, max_frames: int | None) -> Iterator[np.ndarray]:
    decoded = 0
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if _CODEC_THREADS:
            stream.thread_count = _CODEC_THREADS
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                decoded += 1
                if max_frames is not None and decoded >= max_frames:
                    return
        except (av.error.FFmpegError, OSError, ValueError) as err:
            raise _unreadable(path, err, decoded) from None
    if not decoded:
        raise FreePropInputError(f"{path}: no decodable frames; the file is empty or corrupt, re-encode it")


def _folder_frames(path: Path, files: list[Path], size: tuple[int, int]) -> Iterator[np.ndarray]:
    for file in files:
        frame = read_image(file)
        if frame.shape[:2] != size:
            raise FreePropInputError(f"{path}: frames differ in size; every frame of a folder must be the same size")
        yield frame


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> Video:
    """Decode a whole video file or frame folder into memory (`open_video` streams instead).

    Args:
        path: a video file, or a folder whose images (sorted by name) are the frames.
        max_frames: stop after this many frames (saves time and memory on long videos).

    Returns:
        `Video(frames uint8 [F, H, W, 3], fps)`; refuses to hold more than `MAX_DECODED_BYTES`.
    """
    video = open_video(path, max_frames)
    frames, limit = [], MAX_DECODED_BYTES // (3 * video.height * video.width)
    for frame in video.frames:
        frames.append(frame)
        if len(frames) > limit:
            video.frames.close()
            raise FreePropInputError(
                f"{path}: decoding more than {MAX_DECODED_BYTES >> 30} GiB of frames; "
                "limit the number of frames (max_frames / --frames) or trim the video"
            )
    return Video(np.stack(frames), video.fps)


# ----------------------------------------------------------------------------------------------
# Writing (atomic)
# ----------------------------------------------------------------------------------------------


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); rename it onto `path` on success."""
    path = Path(path)
    if not path.parent.exists():
        raise FreePropInputError(f"{path}: output folder {path.parent} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def replaced_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside `folder` to write into; on success it replaces `folder` whole
    (a kill at any point leaves the old folder or the new one, never a mix)."""
    folder = Path(folder)
    partial, old = folder.with_name(f".{folder.name}.partial"), folder.with_name(f".{folder.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    partial.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def _finite(value):
    """JSON-safe: NaN and ±inf (e.g. PSNR of identical frames) become null; numpy scalars become numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def read_json_object(path: str | os.PathLike, what: str) -> dict:
    """A JSON file that must hold an object (`what` names it in the error): one line if it is not JSON
    or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FreePropInputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise FreePropInputError(f"{path}: not {what} (a JSON object)")
    return data


def write_json(path: str | os.PathLike, data, indent: int | None = 1) -> Path:
    """Write `data` atomically as strict JSON (no `Infinity`/`NaN`, which JSON parsers reject)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(data), indent=indent, allow_nan=False))
    return Path(path)


def ensure_not_input(output: str | os.PathLike, *inputs: str | os.PathLike) -> None:
    """Refuse to write over one of the inputs (outputs never overwrite what the user gave us)."""
    out = Path(output).resolve()
    for inp in inputs:
        if Path(inp).resolve() == out:
            raise FreePropInputError(f"{output}: this is an input file; choose another output path")


def _as_uint8_video(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape [F, H, W, 3], got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames, got {frames.dtype}")
    return frames


class VideoWriter:
    """Writes frames one at a time as H.264 mp4/mov/mkv (yuv420p, constant quality `crf`), animated GIF,
    or a folder of PNG frames (no suffix) — into a temporary file or folder beside `path`, renamed into
    place when the `with` block ends without an error (else removed: nothing half-written is left).

    yuv420p needs even sizes: odd sizes are padded by one replicated pixel row or column (the content
    is never resampled). GIF frames are held until the end (GIFs are small by nature).
    """

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS, crf: int = 17):
        self.path, self.fps, self.crf = Path(path), fps, crf
        self.suffix = self.path.suffix.lower()
        if self.suffix not in {"", ".gif", ".mp4", ".mov", ".mkv"}:
            raise FreePropInputError(f"{path}: unknown video format {self.suffix!r}; use .mp4, .gif or a folder name")
        if self.suffix == "" and self.path.exists():
            raise FreePropInputError(f"{path}: folder exists; remove it or choose another output path")
        self.count, self._gif, self._out, self._stream = 0, [], None, None

    def __enter__(self) -> VideoWriter:
        if not self.path.parent.exists():
            raise FreePropInputError(f"{self.path}: output folder {self.path.parent} does not exist; create it first")
        if self.suffix == "":
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent))
        else:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".partial{self.suffix}", dir=self.path.parent)
            os.close(fd)
            self.tmp = Path(tmp)
        if self.suffix in {".mp4", ".mov", ".mkv"}:
            self._out = av.open(str(self.tmp), mode="w", format=self.suffix.lstrip(".").replace("mkv", "matroska"))
        return self

    def write(self, frame: np.ndarray) -> None:
        """One uint8 `[H, W, 3]` frame (every frame the size of the first)."""
        frame = _as_uint8_video(np.asarray(frame)[None])[0]
        if self.suffix == "":
            Image.fromarray(frame).save(self.tmp / f"{self.count:05d}.png")
        elif self.suffix == ".gif":
            self._gif.append(Image.fromarray(frame))
        else:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode="edge")
            if self._stream is None:
                self._stream = self._out.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
                self._stream.width, self._stream.height = frame.shape[1], frame.shape[0]
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = {"crf": str(self.crf), "preset": "medium"} | (
                    {"threads": str(_CODEC_THREADS)} if _CODEC_THREADS else {}
                )
            self._out.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.count += 1

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None and not self.count:
                raise ValueError(f"{self.path}: no frames were written")
            if kind is None and self.suffix == ".gif":
                first, *rest = self._gif
                first.save(self.tmp, format="GIF", save_all=True, append_images=rest, duration=round(1000 / self.fps), loop=0)
            if self._out is not None:
                if kind is None:
                    self._out.mux(self._stream.encode(None))  # flush the encoder
                self._out.close()
            if kind is None:
                if self.suffix != "":
                    os.chmod(self.tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS, crf: int = 17) -> Path:
    """Write uint8 frames `[F, H, W, 3]` at once (`VideoWriter` streams them): format from the suffix —
    `.mp4`/`.mov`/`.mkv` → H.264, `.gif` → GIF, no suffix → a folder of `00000.png` frames."""
    frames = _as_uint8_video(frames)
    with VideoWriter(path, fps, crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write one uint8 `[H, W, 3]` image (format from the suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(
            tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG")
        )
    return path


# ----------------------------------------------------------------------------------------------
# Standardisation: time resampling, cover-resize + centre crop
# ----------------------------------------------------------------------------------------------


def valid_num_frames(num_frames: int, temporal_factor: int = 4) -> int:
    """Largest n ≤ `num_frames` of the form k·temporal_factor + 1 (Wan's VAE needs 4k+1 frames)."""
    if num_frames < 1:
        raise ValueError("num_frames must be ≥ 1")
    return (num_frames - 1) // temporal_factor * temporal_factor + 1


def sample_frame_indices(
    num_source_frames: int,
    source_fps: float,
    target_fps: float | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """Indices of the source frames shown at times k / target_fps, k = 0 … num_frames−1.

    Frame k of the result is the source frame on screen at t = k / target_fps, i.e.
    `floor(k · source_fps / target_fps)` (the small epsilon absorbs rounding in rates such as
    30000/1001). `target_fps=None` keeps the source rate. `num_frames=None` takes every frame that fits.
    """
    target_fps = target_fps or source_fps
    step = source_fps / target_fps
    available = int(np.floor((num_source_frames - 1) / step + 1e-6)) + 1
    if num_frames is None:
        num_frames = available
    elif num_frames > available:
        seconds = (num_frames - 1) / target_fps
        raise FreePropInputError(
            f"video too short: {num_frames} frames at {target_fps:g} fps need {seconds:.2f} s, "
            f"the source has {num_source_frames} frames at {source_fps:g} fps; ask for fewer frames"
        )
    return np.floor(np.arange(num_frames) * step + 1e-6).astype(np.int64)


@dataclass(frozen=True)
class CropBox:
    """Where the output window lies in the resized (pre-crop) frame, in pixels."""

    scale: float  # resize factor applied to the source before cropping
    top: int
    left: int
    height: int
    width: int


def cover_crop_box(src_h: int, src_w: int, height: int, width: int) -> tuple[int, int, CropBox]:
    """Resized size `(rh, rw)` that covers `height × width`, and the centred crop inside it."""
    scale = max(height / src_h, width / src_w)
    rh, rw = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    top, left = (rh - height) // 2, (rw - width) // 2
    return rh, rw, CropBox(scale, top, left, height, width)


def resize_cover_crop(frames: np.ndarray, height: int, width: int) -> tuple[np.ndarray, CropBox]:
    """Resize `[F, H, W, 3]` (or one `[H, W, 3]` image) to cover `height × width`, then centre-crop."""
    single = frames.ndim == 3
    frames = frames[None] if single else frames
    rh, rw, box = cover_crop_box(frames.shape[1], frames.shape[2], height, width)
    if (rh, rw) != frames.shape[1:3]:
        # INTER_AREA averages when shrinking (no aliasing); bicubic when enlarging.
        interp = cv2.INTER_AREA if box.scale < 1 else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (rw, rh), interpolation=interp) for f in frames])
    out = np.ascontiguousarray(frames[:, box.top : box.top + height, box.left : box.left + width])
    return (out[0] if single else out), box


@dataclass(frozen=True)
class StandardVideo:
    frames: np.ndarray  # uint8 [F, height, width, 3]
    fps: float
    indices: np.ndarray  # source frame index of each output frame (masks/depth follow the same)
    crop: CropBox


def standardize(
    video: Video,
    height: int,
    width: int,
    num_frames: int | None = None,
    fps: float | None = DEFAULT_FPS,
    size_multiple: int = 16,
    temporal_factor: int | None = 4,
) -> StandardVideo:
    """Resample in time to `num_frames` at `fps`, then cover-resize and centre-crop to `height × width`.

    `num_frames=None` takes as many frames as the video holds at `fps`, rounded down to the form
    k·temporal_factor + 1 (`temporal_factor=None` skips that rounding). `fps=None` keeps the source rate.
    """
    if height % size_multiple or width % size_multiple:
        raise FreePropInputError(
            f"size {height}x{width} is not a multiple of {size_multiple}; "
            f"use e.g. {height // size_multiple * size_multiple}x{width // size_multiple * size_multiple}"
        )
    indices = sample_frame_indices(len(video.frames), video.fps, fps, num_frames)
    if num_frames is None and temporal_factor:
        indices = indices[: valid_num_frames(len(indices), temporal_factor)]
    frames, box = resize_cover_crop(video.frames[indices], height, width)
    return StandardVideo(frames, fps or video.fps, indices, box)


def to_tensor(frames: np.ndarray):
    """uint8 `[F, H, W, 3]` → float `[3, F, H, W]` in [-1, 1] (the layout Wan's VAE takes, minus batch)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def from_tensor(video) -> np.ndarray:
    """float `[3, F, H, W]` in [-1, 1] → uint8 `[F, H, W, 3]` (rounded, clipped)."""
    array = video.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return array.permute(1, 2, 3, 0).cpu().numpy()
