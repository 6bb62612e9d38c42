import json
import math

import numpy as np
import pytest

from freeprop.errors import FreePropInputError
from freeprop.eval.metrics.vlm import VLMEditScore
from freeprop.vlm import StubVLM, VLMReplyError, ask_json, make_vlm, parse_json_reply


def _videos(frames=9):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8), rng.integers(
        0, 255, (frames, 8, 8, 3), dtype=np.uint8
    )


@pytest.mark.parametrize(
    "reply, keys, expected",
    [
        ('{"Object": "cup"}', ["Object"], {"Object": "cup"}),
        ('```json\n{"Object": "cup"}\n```', ["Object"], {"Object": "cup"}),
        ('Sure! Here it is: {"Task": "Swap"} Hope this helps.', ["Task"], {"Task": "Swap"}),
        ('{"Caption": "The video shows {a} room"}', ["Caption"], {"Caption": "The video shows {a} room"}),
        ('{"Object": "cup"', ["Object"], None),  # truncated
        ('{"object": "cup"}', ["Object"], None),  # wrong key
        ("{'Object': 'cup'}", ["Object"], None),  # not JSON
        ('{"x": 1} then {"Object": "ball"}', ["Object"], {"Object": "ball"}),
    ],
)
def test_parse_json_reply(reply, keys, expected):
    assert parse_json_reply(reply, keys) == expected


def test_ask_json_retries_then_fails_with_the_last_reply():
    vlm = StubVLM(["no", '{"Object": ""}', '{"Object": "dog"}'])
    assert ask_json(vlm, [], "p", ["Object"], retries=3) == {"Object": "dog"} and len(vlm.calls) == 3
    with pytest.raises(VLMReplyError, match="after 2 tries; last reply: 'still no'"):
        ask_json(StubVLM(["still no"]), [], "p", ["Object"], retries=2)


def test_vlm_specs():
    assert isinstance(make_vlm("stub:5"), StubVLM)
    judge = make_vlm("openai:http://127.0.0.1:9/v1#Qwen/Qwen2.5-VL-72B-Instruct")
    assert (
        judge.url == "http://127.0.0.1:9/v1/chat/completions"
        and judge.model == "Qwen/Qwen2.5-VL-72B-Instruct"
    )
    with pytest.raises(FreePropInputError, match="qwen:PATH"):
        make_vlm("gpt4")


def test_qwen_judge_runs_the_real_model_class(tiny_qwen_vl):
    from freeprop.vlm import QwenVL

    model, processor = tiny_qwen_vl
    judge = QwenVL(model, processor, max_new_tokens=4)
    source, edited = _videos(3)
    big = [np.kron(f, np.ones((7, 7, 1), np.uint8)) for f in (source[0], edited[0])]  # 56×56 frames
    reply = judge.chat(big, "Score the edit")
    assert isinstance(reply, str) and reply == judge.chat(big, "Score the edit")  # greedy: deterministic
    assert "Score the edit" not in reply  # only the newly generated tokens come back
    result = VLMEditScore(judge, "editverse", retries=1)(np.stack([big[0]] * 3), np.stack([big[1]] * 3), "x")
    assert len(result.per_frame) == 3  # random weights: no usable number, recorded not crashed
    assert result.failures == sum(math.isnan(v) for v in result.per_frame)


def test_openai_judge_speaks_the_chat_completions_protocol():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from freeprop.vlm import OpenAIVLM

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(
                (
                    self.path,
                    self.headers.get("Authorization"),
                    json.loads(self.rfile.read(int(self.headers["Content-Length"]))),
                )
            )
            body = json.dumps({"choices": [{"message": {"content": "Total Score: 7"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = OpenAIVLM(f"http://127.0.0.1:{server.server_port}/v1", "qwen-vl", api_key="k")
        source, edited = _videos(1)
        assert judge.chat([source[0], edited[0]], "rate") == "Total Score: 7"
    finally:
        server.shutdown()
    path, auth, body = received[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k"
    assert body["model"] == "qwen-vl" and body["temperature"] == 0
    content = body["messages"][0]["content"]
    assert [c["type"] for c in content] == ["image_url", "image_url", "text"] and content[2]["text"] == "rate"
    assert content[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
