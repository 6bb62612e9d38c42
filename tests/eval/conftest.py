"""Tiny random CLIP / DINOv2 models (real transformers classes) saved as folders, like the real ones."""

import pytest

from freeprop.eval.tiny import save_clip, save_dino


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory):
    return save_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_dino_folder(tmp_path_factory):
    return save_dino(tmp_path_factory.mktemp("tiny-dino"))
