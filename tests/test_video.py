import json
import os

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from freeprop.errors import FreePropInputError
from freeprop.video import (
    ensure_not_input,
    from_tensor,
    read_image,
    read_video,
    resize_cover_crop,
    sample_frame_indices,
    standardize,
    to_tensor,
    valid_num_frames,
    write_image,
    write_video,
)
from tests.conftest import moving_pattern

# --- round trips -----------------------------------------------------------------------------


def test_mp4_round_trip_psnr(tmp_path, clip):
    path = write_video(tmp_path / "clip.mp4", clip, fps=16)
    video = read_video(path)
    assert video.frames.shape == clip.shape and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(16.0)
    assert peak_signal_noise_ratio(clip, video.frames) > 30  # H.264 crf 17 with 4:2:0 chroma


def test_mp4_fractional_fps_and_max_frames(tmp_path, clip):
    path = write_video(tmp_path / "ntsc.mp4", clip, fps=30000 / 1001)
    video = read_video(path, max_frames=5)
    assert video.fps == pytest.approx(29.97, abs=0.01)
    assert len(video.frames) == 5


def test_odd_size_is_padded_not_resampled(tmp_path, clip):
    odd = clip[:, :63, :95]
    video = read_video(write_video(tmp_path / "odd.mp4", odd))
    assert video.frames.shape == (17, 64, 96, 3)
    assert peak_signal_noise_ratio(odd, video.frames[:, :63, :95]) > 30


def test_gif_and_frame_folder_round_trip(tmp_path, clip):
    gif = read_video(write_video(tmp_path / "clip.gif", clip, fps=10))
    assert gif.frames.shape == clip.shape
    assert peak_signal_noise_ratio(clip, gif.frames) > 20  # GIF palettes are lossy
    folder = read_video(write_video(tmp_path / "frames", clip))
    np.testing.assert_array_equal(folder.frames, clip)  # PNG is lossless
    assert sorted(os.listdir(tmp_path / "frames"))[:2] == ["00000.png", "00001.png"]


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path, clip):
    write_video(tmp_path / "a.mp4", clip)
    write_image(tmp_path / "a.png", clip[0])
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "a.png"]
    with pytest.raises(ValueError):
        write_video(tmp_path / "b.mp4", clip.astype(np.float32))
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "a.png"]


# --- images ----------------------------------------------------------------------------------


def test_read_image_modes(tmp_path):
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    img = read_image(tmp_path / "rgba.png")
    assert img.shape == (8, 10, 3)
    assert tuple(img[0, 0]) == (200, 0, 0) and tuple(img[0, 9]) == (255, 255, 255)  # composited on white

    Image.fromarray(np.full((6, 6), 77, np.uint8), "L").save(tmp_path / "gray.png")
    assert tuple(read_image(tmp_path / "gray.png")[0, 0]) == (77, 77, 77)

    palette = Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6), "L").convert("P")
    palette.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (6, 6, 3)

    Image.fromarray(np.full((6, 6, 3), 9, np.uint8)).save(tmp_path / "img.webp", lossless=True)
    assert tuple(read_image(tmp_path / "img.webp")[3, 3]) == (9, 9, 9)


# --- bad input -------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FreePropInputError, match="no such file"):
        read_video(tmp_path / "nope.mp4")
    with pytest.raises(FreePropInputError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_truncated_mp4_gives_clear_error(tmp_path, clip):
    data = write_video(tmp_path / "clip.mp4", clip).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(FreePropInputError, match="cut.mp4: not a readable video") as err:
        read_video(tmp_path / "cut.mp4")
    assert "\n" not in str(err.value)


def test_not_a_video_and_empty_file(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello, this is not a video")
    with pytest.raises(FreePropInputError, match="not a readable video"):
        read_video(tmp_path / "notes.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(FreePropInputError):
        read_video(tmp_path / "empty.mp4")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "still.png")
    with pytest.raises(FreePropInputError, match="image, not a video"):
        read_video(tmp_path / "still.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FreePropInputError, match="not a readable image"):
        read_image(tmp_path / "broken.png")


def test_absurd_image_size(tmp_path):
    Image.new("RGB", (1, 40)).save(tmp_path / "thin.png")
    with pytest.raises(FreePropInputError, match="outside 2..8192"):
        read_image(tmp_path / "thin.png")


def test_never_overwrite_input(tmp_path):
    with pytest.raises(FreePropInputError, match="input file"):
        ensure_not_input(tmp_path / "x.mp4", tmp_path / "y.png", tmp_path / "x.mp4")
    ensure_not_input(tmp_path / "out.mp4", tmp_path / "x.mp4")


def test_missing_output_folder(tmp_path, clip):
    with pytest.raises(FreePropInputError, match="does not exist"):
        write_video(tmp_path / "no" / "dir.mp4", clip)


# --- standardisation -------------------------------------------------------------------------


def test_frame_indices_hand_cases():
    # 30 fps → 15 fps: every second frame.
    np.testing.assert_array_equal(sample_frame_indices(10, 30, 15), [0, 2, 4, 6, 8])
    # 24 fps → 16 fps: t = k/16 s shows source frame floor(1.5k).
    np.testing.assert_array_equal(sample_frame_indices(12, 24, 16, 8), [0, 1, 3, 4, 6, 7, 9, 10])
    # 8 fps → 16 fps: each frame shown twice.
    np.testing.assert_array_equal(sample_frame_indices(3, 8, 16), [0, 0, 1, 1, 2])
    # NTSC 29.97 → 29.97: identity despite the non-integer rate.
    np.testing.assert_array_equal(sample_frame_indices(5, 30000 / 1001, 30000 / 1001), np.arange(5))
    # Same rate, fewer frames.
    np.testing.assert_array_equal(sample_frame_indices(100, 16, None, 3), [0, 1, 2])


def test_frame_indices_too_short():
    with pytest.raises(FreePropInputError, match="too short"):
        sample_frame_indices(10, 16, 16, 81)


def test_valid_num_frames():
    assert [valid_num_frames(n) for n in (1, 4, 5, 80, 81, 83)] == [1, 1, 5, 77, 81, 81]
    assert valid_num_frames(7, temporal_factor=1) == 7


def test_resize_cover_crop_exact_on_integer_downscale():
    # A 2x downscale of a block image with INTER_AREA is the 2x2 block mean; then a centred crop.
    img = np.repeat(np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4) * 10, 2, 0), 2, 1)
    frames = np.stack([img] * 3, -1)[None]  # (1, 8, 8, 3)
    out, box = resize_cover_crop(frames, 4, 2)
    assert box.scale == 0.5 and (box.top, box.left) == (0, 1)
    np.testing.assert_array_equal(out[0, ..., 0], (np.arange(16).reshape(4, 4) * 10)[:, 1:3])


def test_standardize_keeps_indices_and_shape():
    clip = moving_pattern(frames=40, height=48, width=80)
    std = standardize(_video(clip, fps=32), height=32, width=32, fps=16)
    # 40 frames at 32 fps → 20 at 16 fps → rounded down to 4k+1 = 17.
    assert std.frames.shape == (17, 32, 32, 3)
    np.testing.assert_array_equal(std.indices, np.arange(0, 34, 2))
    assert std.crop.scale == pytest.approx(32 / 48)
    with pytest.raises(FreePropInputError, match="multiple of 16"):
        standardize(_video(clip, 16), height=30, width=32)


def test_tensor_conversion_round_trip(clip):
    tensor = to_tensor(clip)
    assert tensor.shape == (3, 17, 64, 96) and tensor.min() >= -1 and tensor.max() <= 1
    np.testing.assert_array_equal(from_tensor(tensor), clip)


def _video(frames, fps):
    from freeprop.video import Video

    return Video(frames, fps)


def test_write_json_is_strict_json(tmp_path):
    from freeprop.video import write_json

    write_json(tmp_path / "m.json", {"psnr": float("inf"), "rows": [float("nan"), np.float32(1.5), np.int64(3)]})

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=refuse) == {"psnr": None, "rows": [None, 1.5, 3]}


def test_sizes_in_messages_are_height_x_width(tmp_path):
    from freeprop.models import build_transformer
    from freeprop.pipeline import FreePropPipeline, make_scheduler

    pipe = FreePropPipeline(build_transformer("tiny"), make_scheduler())
    with pytest.raises(FreePropInputError, match=r"first frame is 32x32 .* video is 16x48"):
        pipe(np.zeros((5, 16, 48, 3), np.uint8), np.zeros((32, 32, 3), np.uint8), num_inference_steps=1)
