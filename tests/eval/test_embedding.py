import numpy as np
import pytest
import torch

from freeprop.errors import FreePropInputError
from freeprop.eval.metrics.embedding import (
    load_clip_embedder,
    load_clip_scorer,
    load_dino_embedder,
    shrink_to,
    temporal_consistency,
)
from tests.conftest import moving_pattern


def test_temporal_consistency_hand_cases():
    s = 1 / np.sqrt(2)
    assert temporal_consistency(np.array([[1.0, 0], [s, s], [0, 1]])) == pytest.approx(s)
    assert temporal_consistency(np.array([[1.0, 0], [-1, 0], [1, 0]])) == 0.0  # max(0, ·) clamps
    assert temporal_consistency(np.array([[2.0, 0], [3, 0]])) == pytest.approx(1.0)  # scale-free
    assert temporal_consistency(np.ones((1, 4))) == 1.0


@pytest.mark.parametrize("loader", ["clip", "dino"])
def test_static_video_is_exactly_consistent_and_motion_is_not(loader, tiny_clip_folder, tiny_dino_folder):
    embedder = (
        load_clip_embedder(str(tiny_clip_folder))
        if loader == "clip"
        else load_dino_embedder(str(tiny_dino_folder))
    )
    static = np.repeat(moving_pattern(1, 40, 40), 6, axis=0)
    assert temporal_consistency(embedder(list(static))) == pytest.approx(1.0, abs=1e-6)
    moving = moving_pattern(6, 40, 40, speed=9)
    moving[3] = 255 - moving[3]  # a flash: consistency must drop
    assert temporal_consistency(embedder(list(moving))) < 0.999


def test_clip_embedder_is_the_vision_pooler_before_projection(tiny_clip_folder):
    from transformers import CLIPImageProcessor, CLIPModel

    embedder = load_clip_embedder(str(tiny_clip_folder))
    frames = list(moving_pattern(3, 48, 40))
    model = CLIPModel.from_pretrained(tiny_clip_folder).eval()
    pixels = CLIPImageProcessor.from_pretrained(tiny_clip_folder)(
        images=frames, return_tensors="pt"
    ).pixel_values
    with torch.no_grad():
        expected = torch.nn.functional.normalize(
            model.vision_model(pixel_values=pixels).pooler_output, dim=-1
        )
    np.testing.assert_allclose(embedder(frames), expected.numpy(), atol=1e-6)
    assert embedder(frames).shape == (3, 32)  # hidden size, not the 16-d projection


def test_frame_score_agrees_with_torchmetrics_clipscore(tiny_clip_folder):
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    scorer = load_clip_scorer(str(tiny_clip_folder))
    frames = moving_pattern(4, 40, 56)
    prompt = "a red ab"
    ours = scorer.per_frame(scorer.image_embeddings(list(frames)), scorer.text_embedding(prompt))

    class TensorCLIP(CLIPModel):  # torchmetrics 1.9 expects transformers-4 style tensors from get_*_features
        def get_image_features(self, *args, **kwargs):
            return super().get_image_features(*args, **kwargs).pooler_output

        def get_text_features(self, *args, **kwargs):
            return super().get_text_features(*args, **kwargs).pooler_output

    reference = CLIPScore(
        model_name_or_path=lambda: (
            TensorCLIP.from_pretrained(tiny_clip_folder),
            CLIPProcessor.from_pretrained(tiny_clip_folder),
        )
    )
    for frame, value in zip(frames, ours):
        expected = float(reference(torch.from_numpy(frame).permute(2, 0, 1), prompt).detach())
        reference.reset()
        assert max(value, 0.0) == pytest.approx(expected, abs=1e-3)  # torchmetrics clamps at 0
    assert scorer.score(
        scorer.image_embeddings(list(frames)), scorer.text_embedding(prompt)
    ) == pytest.approx(ours.mean())


def test_pickscore_shrinks_frames_to_672():
    big = np.zeros((900, 1600, 3), np.uint8)
    assert shrink_to(big, 672).shape == (378, 672, 3)
    small = np.zeros((100, 200, 3), np.uint8)
    assert shrink_to(small, 672) is small


def test_missing_model_is_one_clear_error(tmp_path):
    with pytest.raises(FreePropInputError, match="cannot load CLIPVisionModel from"):
        load_clip_embedder(str(tmp_path / "nowhere"))


def test_metric_processors_are_the_pillow_ones():
    """A torchvision-backed processor (what transformers picks when torchvision is installed) is swapped
    for its Pillow twin with the same settings; a processor's inner image processor too."""
    from transformers import CLIPImageProcessorPil

    from freeprop.eval.metrics.embedding import pillow_processor, processor_backend

    settings = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).to_dict()
    FastOne = type("CLIPImageProcessorFast", (), {"to_dict": lambda self: settings})  # noqa: N806
    swapped = pillow_processor(FastOne())
    assert isinstance(swapped, CLIPImageProcessorPil) and swapped.size == {"shortest_edge": 28}
    holder = type("Processor", (), {})()
    holder.image_processor = FastOne()
    assert processor_backend(pillow_processor(holder)) == "CLIPImageProcessorPil"
