"""`freeprop app`, driven for real: through gradio_client over HTTP, and in headless Chromium."""

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402

from freeprop.app import launch  # noqa: E402
from freeprop.video import read_image, read_video, write_image, write_video  # noqa: E402
from tests.conftest import moving_pattern  # noqa: E402


@pytest.fixture(scope="module")
def server():
    page, (_, url, _) = launch(port=None, prevent_thread_lock=True, quiet=True)
    yield url
    page.close()


@pytest.fixture
def clip(tmp_path):
    frames = moving_pattern(frames=9, height=32, width=48)
    write_video(tmp_path / "clip.mp4", frames, fps=8)
    write_image(tmp_path / "edit.png", 255 - frames[0])
    write_image(tmp_path / "square.png", np.zeros((40, 40, 3), np.uint8))
    return tmp_path


def editor_value(png):
    return {"background": handle_file(str(png)), "layers": [], "composite": handle_file(str(png))}


def test_the_app_binds_to_loopback_by_default(server):
    assert server.startswith("http://127.0.0.1:")


def test_upload_frame0_then_propagate_with_the_bundled_model(server, clip):
    client = Client(server, verbose=False)
    _, frame0_png, note = client.predict(handle_file(str(clip / "clip.mp4")), api_name="/frame0")
    assert np.array_equal(read_image(frame0_png), read_video(clip / "clip.mp4", max_frames=1).frames[0])
    assert "32x48" in note
    comparison, result, note = client.predict(
        handle_file(str(clip / "clip.mp4")), editor_value(clip / "edit.png"), "freeprop", "bundled", 2, "",
        api_name="/propagate",
    )
    out = read_video(result).frames
    assert out.shape == (9, 32, 48, 3) and "with freeprop" in note
    assert np.abs(out[0].astype(int) - read_image(clip / "edit.png")).mean() < 8  # frame 0 is the edit
    assert read_video(comparison).frames.shape == (9, 32, 144, 3)  # source | edit | result


@pytest.mark.parametrize(
    "case,message",
    [
        ("not-a-video", "not a readable video"),
        ("aspect", "aspect ratio"),
        ("random-preset", "random weights"),
        ("size", "HEIGHTxWIDTH"),
    ],
)
def test_bad_input_is_one_clear_line_in_the_page(server, clip, case, message):
    from gradio_client.exceptions import AppError

    video, edit, model, size = clip / "clip.mp4", clip / "edit.png", "bundled", ""
    if case == "not-a-video":
        (clip / "notes.mp4").write_text("hello")
        video = clip / "notes.mp4"
    elif case == "aspect":
        edit = clip / "square.png"
    elif case == "random-preset":
        model = "small"
    elif case == "size":
        size = "big"
    with pytest.raises(AppError) as error:
        Client(server, verbose=False).predict(
            handle_file(str(video)), editor_value(edit), "freeprop", model, None, size, api_name="/propagate"
        )
    text = str(error.value)
    assert message in text and "Traceback" not in text and "\n" not in text.strip()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def wait_for_text(page, text, timeout_ms):
    """Wait for `text` in the page; on a time-out, fail with what the page's note says instead."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_text(text).wait_for(timeout=timeout_ms)
    except PlaywrightTimeout:
        pytest.fail(f"{text!r} not shown in {timeout_ms / 1000:.0f} s; the note says "
                    f"{page.locator('#note').inner_text()!r}")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_the_page_in_headless_chromium_shows_the_result_video(server, clip, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        page = browser.new_page()
        page.goto(server)
        # 1. Upload the video: frame 0 appears in the editor and as a download. The source's own file
        # input, by id: the page's components load in no fixed order, and the editor has one too.
        page.locator("#source input[type=file]").set_input_files(str(clip / "clip.mp4"))
        wait_for_text(page, "Frame 0: 32x48", 60_000)
        # 2. Propagate frame 0 as it is (flow-warp: no model), 3. the result video appears.
        page.locator("#propagate").click()
        wait_for_text(page, "Done: 9 frames at 32x48", 120_000)
        video = page.locator("#comparison video")
        video.wait_for(timeout=30_000)
        assert "comparison" in (video.get_attribute("src") or "")
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        if os.environ.get("FREEPROP_SCREENSHOT"):
            shutil.copy(tmp_path / "app.png", os.environ["FREEPROP_SCREENSHOT"])
        assert page.locator("text=Traceback").count() == 0
        browser.close()
