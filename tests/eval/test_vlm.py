import math

import numpy as np
import pytest

from freeprop.eval.metrics.vlm import (
    StubVLM,
    VLMEditScore,
    parse_criteria,
    parse_score,
    sample_vlm_frames,
)

GOOD = """Prompt Following: 3 - the crown is there
Edit Quality: 2 - slight blur
Background Consistency: 3 - unchanged
Total Score: 8"""


def test_frame_sampling_protocols():
    assert sample_vlm_frames(81, "editverse") == [0, 27, 54]  # T divisible by 3 → 3 frames
    assert sample_vlm_frames(80, "editverse") == [0, 26, 52, 78]  # else 4 (EditVerse's quirk)
    assert sample_vlm_frames(81, "ffp10") == [0, 9, 18, 27, 36, 44, 53, 62, 71, 80]
    assert sample_vlm_frames(4, "ffp10") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="unknown VLM frame protocol"):
        sample_vlm_frames(10, "all")


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("7", 7), (" 7.\n", 7), ("**7**", 7), ("Score: 7", 7), ("7/9", 7), ("Total Score: 8", 8), ("7.0", 7),
        ("The overall score is 6.", 6), (GOOD, 8), ("`5`", 5),
        ("", None), ("I cannot evaluate this image.", None), ("10", None), ("-1", None), ("3 or 4", None),
        ("seven", None), ("7.5", None),
    ],
)  # fmt: skip
def test_parse_score_takes_what_judges_send_and_rejects_the_rest(reply, expected):
    assert parse_score(reply) == expected


def test_parse_criteria():
    assert parse_criteria(GOOD) == {"Prompt Following": 3, "Edit Quality": 2, "Background Consistency": 3}
    assert parse_criteria("Prompt Following: **[2]** - ok\nEdit Quality: 9") == {"Prompt Following": 2}


def _videos(frames=9):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8), rng.integers(
        0, 255, (frames, 8, 8, 3), dtype=np.uint8
    )


def test_two_stage_protocol_with_retries():
    # frame 1: judge, extraction answers "7"; frame 2: judge, junk, then "5"; frame 3: judge, "6".
    judge = StubVLM([GOOD, "7", GOOD, "I think it's fine", "5", GOOD, "6"])
    result = VLMEditScore(judge, "editverse", retries=3)(*_videos(9), "add a crown")
    assert result.frames == [0, 3, 6] and result.per_frame == [7.0, 5.0, 6.0] and result.score == 6.0
    assert result.failures == 0
    assert [n for n, _ in judge.calls] == [2, 0, 2, 0, 0, 2, 0]  # two images to the judge, none to extraction
    assert "add a crown" in judge.calls[0][1] and GOOD in judge.calls[1][1]


def test_unusable_extraction_falls_back_to_the_total_line_then_fails():
    judge = StubVLM([GOOD, "n/a", "n/a"])  # extraction never works; the judge's own "Total Score: 8" is used
    result = VLMEditScore(judge, "editverse", retries=2)(*_videos(3), "x")
    assert result.per_frame == [8.0] * 3 and result.score == 8.0
    junk = StubVLM(["no idea"])
    result = VLMEditScore(junk, "editverse", retries=2)(*_videos(3), "x")
    assert result.failures == 3 and math.isnan(result.score)


def test_red_blue_quirk_is_off_by_default():
    seen = []

    class Recorder(StubVLM):
        def chat(self, images, prompt):
            seen.extend(images)
            return super().chat(images, prompt)

    source, edited = _videos(3)
    VLMEditScore(Recorder(["Total Score: 3", "3"]), "editverse")(source, edited, "x")
    np.testing.assert_array_equal(seen[0], source[0])
    seen.clear()
    VLMEditScore(Recorder(["Total Score: 3", "3"]), "editverse", swap_red_blue=True)(source, edited, "x")
    np.testing.assert_array_equal(seen[0], source[0][..., ::-1])


def test_an_unreachable_judge_is_retried_then_recorded_per_frame():
    """Connection refused: each call is retried, then that frame is a recorded failure — the run goes on."""
    from freeprop.eval.metrics.vlm import VLMEditScore
    from freeprop.vlm import OpenAIVLM

    judge = OpenAIVLM("http://127.0.0.1:9/v1", "m", timeout=2)  # port 9 (discard): nothing listens
    scorer = VLMEditScore(judge, protocol="ffp10", retries=2, backoff=0.0)
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    result = scorer(frames, frames, "make it red")
    assert np.isnan(result.score) and result.failures == len(result.frames) > 0
    assert all("judge unreachable after 2 tries" in r for r in result.replies)


def test_a_judge_that_recovers_scores_normally():
    from freeprop.eval.metrics.vlm import VLMEditScore
    from freeprop.vlm import StubVLM

    class Flaky(StubVLM):
        def chat(self, images, prompt):
            if len(self.calls) % 2 == 0:
                self.calls.append("refused")
                raise ConnectionRefusedError("refused")
            return super().chat(images, prompt)

    result = VLMEditScore(Flaky(["Total Score: 6"]), retries=3, backoff=0.0)(
        np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8), "x")
    assert result.score == 6 and result.failures == 0
