import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# diffusers' tiny Wan test config with Fun-Control's 3·C input channels (C = 12), and a tiny AlphaPredictor
TINY_FUN_CONTROL = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=36,
    out_channels=12,
    text_dim=16,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
TINY_PREDICTOR = dict(predictor_dim=16, predictor_layers=1, predictor_heads=2, predictor_pool=2)


def pytest_sessionfinish(session, exitstatus):
    """A child process a test leaves running (a DataLoader worker, a pool) can keep the interpreter from
    exiting after every test passed — CI then hangs until its time limit. Name and end them instead,
    and fail the run so the leak gets fixed."""
    import multiprocessing

    leftover = multiprocessing.active_children()
    for child in leftover:
        child.kill()
        child.join(10)
    if leftover:
        print(f"\nchild processes left running by the tests (killed): {[c.name for c in leftover]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_default_dtype(torch.float32)
    yield


def moving_pattern(frames: int = 17, height: int = 64, width: int = 96, speed: int = 3) -> np.ndarray:
    """A smooth, textured uint8 clip [F, H, W, 3] that translates by `speed` px per frame."""
    yy, xx = np.mgrid[:height, :width]
    clip = [
        np.stack(
            [
                127 + 100 * np.sin((xx + speed * t) / 7),
                127 + 100 * np.cos((yy + 2 * t) / 5),
                127 + 60 * np.sin((xx + yy + speed * t) / 11),
            ],
            axis=-1,
        )
        for t in range(frames)
    ]
    return np.clip(np.stack(clip), 0, 255).astype(np.uint8)


@pytest.fixture
def clip() -> np.ndarray:
    return moving_pattern()


def translating_clip(
    frames: int = 6, height: int = 64, width: int = 64, dx: int = 2, dy: int = 1
) -> np.ndarray:
    """A rigid translation: frame t shows a smooth texture shifted by (−dx·t, −dy·t) pixels."""
    import cv2

    rng = np.random.default_rng(0)
    big_h, big_w = height + dy * frames + 8, width + dx * frames + 8
    texture = cv2.resize(
        rng.random((big_h // 6, big_w // 6, 3)).astype(np.float32),
        (big_w, big_h),
        interpolation=cv2.INTER_CUBIC,
    )
    texture = (np.clip(texture, 0, 1) * 255).astype(np.uint8)
    return np.stack([texture[dy * t : dy * t + height, dx * t : dx * t + width] for t in range(frames)])


@pytest.fixture(scope="session")
def clip_tokenizer(tmp_path_factory):
    """A real `CLIPTokenizer` over a 57-token BPE vocabulary (letters, a few merges, <sot>=55, <eot>=56)."""
    from freeprop.eval.tiny import clip_tokenizer as build

    return build(tmp_path_factory.mktemp("clip-tokenizer"))


@pytest.fixture(scope="session")
def tiny_qwen_vl():
    """A random 2-layer `Qwen2_5_VLForConditionalGeneration` and a processor for it (see `tiny.qwen_vl`)."""
    from freeprop.eval.tiny import qwen_vl

    return qwen_vl()


def exit_code(argv: list[str]) -> int:
    """`freeprop ARGV`'s exit status, whether `main` returns it or argparse exits with it."""
    from freeprop.cli import main

    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code
