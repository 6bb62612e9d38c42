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
        def chat(self, images, prompt, **options):
            seen.extend(images)
            return super().chat(images, prompt, **options)

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
        def chat(self, images, prompt, **options):
            if len(self.calls) % 2 == 0:
                self.calls.append("refused")
                raise ConnectionRefusedError("refused")
            return super().chat(images, prompt, **options)

    result = VLMEditScore(Flaky(["Total Score: 6"]), retries=3, backoff=0.0)(
        np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8), "x")
    assert result.score == 6 and result.failures == 0


def test_editverse_protocol_request_assembly_golden(tmp_path):
    """`--protocol editverse` against an OpenAI-compatible judge (a local stand-in server): text before
    images, the instruction's tags as written, frames range(0, T, T//3), red and blue swapped (EditVerse's
    quirk), and the extraction retried until the reply is exactly one digit."""
    import base64
    import io
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from PIL import Image

    from freeprop.eval.metrics.vlm import JudgeProtocol, VLMEditScore
    from freeprop.vlm import OpenAIVLM

    requests = []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            text = next(c["text"] for c in body["messages"][0]["content"] if c["type"] == "text")
            extracts = sum(1 for r in requests if "EXTRACT[" in json.dumps(r))
            reply = "Prompt Following: 3\nTotal Score: 7" if text.startswith("JUDGE[") else (
                "Score: 7" if extracts % 2 == 1 else "7")  # a lenient answer first, then the bare digit
            data = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"judge": "JUDGE[{instruction}] {not a placeholder}", "extract": "EXTRACT[{evaluation}]"}))
    try:
        spec = JudgeProtocol.named("editverse", prompts)
        judge = OpenAIVLM(f"http://127.0.0.1:{server.server_address[1]}/v1", "judge-model")
        source = np.zeros((7, 16, 16, 3), np.uint8)
        source[..., 0] = 255  # pure red
        instruction = "Propagate the edit in <image1> to <video1>."
        result = VLMEditScore(judge, spec, backoff=0.0)(source, source, instruction)
    finally:
        server.shutdown()
    assert result.frames == [0, 2, 4, 6] and result.score == 7 and result.failures == 0
    judged = [r for r in requests if "JUDGE[" in json.dumps(r)]
    assert len(judged) == 4 and len(requests) == 4 * 3  # per frame: 1 judge call, 2 extraction calls
    content = judged[0]["messages"][0]["content"]
    assert [c["type"] for c in content] == ["text", "image_url", "image_url"]  # text first
    assert content[0]["text"] == "JUDGE[Propagate the edit in <image1> to <video1>.] {not a placeholder}"
    jpeg = base64.b64decode(content[1]["image_url"]["url"].split(",", 1)[1])
    pixel = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))[8, 8]
    assert pixel[2] > 200 and pixel[0] < 60  # red sent as blue: EditVerse's BGR quirk
    extract = [r for r in requests if "EXTRACT[" in json.dumps(r)][0]["messages"][0]["content"]
    assert extract == [{"type": "text", "text": "EXTRACT[Prompt Following: 3\nTotal Score: 7]"}]


def test_faithful_protocols_need_the_prompt_file(tmp_path):
    from freeprop.errors import FreePropInputError
    from freeprop.eval.metrics.vlm import JudgeProtocol

    with pytest.raises(FreePropInputError, match="needs --judge-prompts FILE"):
        JudgeProtocol.named("ffp")
    (tmp_path / "p.json").write_text('{"judge": "no slot", "extract": "{evaluation}"}')
    with pytest.raises(FreePropInputError, match=r"\{instruction\}"):
        JudgeProtocol.named("editverse", tmp_path / "p.json")
    (tmp_path / "p.json").write_text('{"judge": "{instruction}", "extract": "{evaluation}"}')
    ffp = JudgeProtocol.named("ffp", tmp_path / "p.json")
    assert ffp.frames == "ffp10" and ffp.strict and ffp.text_first and not ffp.swap_red_blue


def test_the_runner_gives_a_faithful_judge_the_instruction_as_written(tmp_path):
    import json

    from freeprop.eval.benchmarks import load_bench
    from freeprop.eval.metrics.vlm import JudgeProtocol, VLMEditScore
    from freeprop.eval.runner import MetricModels, Scorer
    from freeprop.video import write_video
    from freeprop.vlm import StubVLM

    (tmp_path / "videos").mkdir()
    frames = np.zeros((6, 16, 16, 3), np.uint8)
    write_video(tmp_path / "videos" / "a.mp4", frames)
    record = {"<video1>": "videos/a.mp4", "<text>": "Propagate the edit in <image1> to <video1>.", "type": "x"}
    (tmp_path / "EditVerseBench.json").write_text(json.dumps({"a": record}))
    case = load_bench(f"editverse:{tmp_path}").cases[0]
    (tmp_path / "p.json").write_text('{"judge": "J:{instruction}", "extract": "E:{evaluation}"}')
    for name, expected in (("editverse", "J:Propagate the edit in <image1> to <video1>."),
                           ("freeprop", "Propagate the edit in to .")):
        judge = StubVLM(["7"])
        spec = JudgeProtocol.named(name, tmp_path / "p.json")
        scorer = Scorer(MetricModels(vlm=VLMEditScore(judge, spec, backoff=0.0)), ("vlm",))
        assert scorer.score(case, frames, "k", frames)["vlm"] == 7
        assert expected in judge.calls[0][1]
