"""Vision-language model backends, shared by evaluation (the VLM judge) and the FFP-300K pipeline.

Anything with `chat(images, prompt) -> str` is a VLM here; images are uint8 RGB `[H, W, 3]`, sent in
order before the prompt (a video is passed as a few of its frames — first / middle / last for the
paper's task discrimination). Backends:

- `QwenVL` — Qwen2.5-VL through transformers (`Qwen2_5_VLForConditionalGeneration` + its processor),
  greedy decoding; the paper uses Qwen2.5-VL-72B-Instruct;
- `OpenAIVLM` — any OpenAI-compatible chat endpoint (vLLM / SGLang serving Qwen2.5-VL, or OpenAI),
  temperature 0, images as base64 JPEG data URLs;
- `StubVLM` — scripted replies, for tests.

`ask_json` adds the strict-JSON protocol the paper's prompts ask for (§7.1: "Output strictly in JSON"):
code fences stripped, the first JSON object parsed, required keys checked, retried, and a
`VLMReplyError` naming the last reply when it never parses.
"""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


def _jpeg(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@dataclass
class StubVLM:
    """Replies from a script, in order (cycled); records what it was asked. For tests."""

    replies: Sequence[str]
    calls: list = field(default_factory=list)

    def chat(self, images: Sequence[np.ndarray], prompt: str, text_first: bool = False) -> str:
        self.calls.append((len(images), prompt))
        return self.replies[(len(self.calls) - 1) % len(self.replies)]


class OpenAIVLM:
    """An OpenAI-compatible chat endpoint (vLLM / SGLang serving Qwen2.5-VL-72B, or OpenAI itself)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def chat(self, images: Sequence[np.ndarray], prompt: str, text_first: bool = False) -> str:
        pictures = [
            {
                "type": "image_url",
                "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(_jpeg(im)).decode()},
            }
            for im in images
        ]
        text = [{"type": "text", "text": prompt}]
        content = text + pictures if text_first else pictures + text
        body = {"model": self.model, "temperature": 0, "messages": [{"role": "user", "content": content}]}
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}),
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())["choices"][0]["message"]["content"] or ""


class QwenVL:
    """Qwen2.5-VL through transformers (greedy decoding); `model`/`processor` injectable for tests."""

    def __init__(self, model, processor, max_new_tokens: int = 256):
        self.model, self.processor, self.max_new_tokens = model.eval(), processor, max_new_tokens

    @classmethod
    def from_pretrained(cls, path: str, device="cpu", dtype=None, **kwargs) -> QwenVL:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        from freeprop.hub import load_pretrained

        model = load_pretrained(Qwen2_5_VLForConditionalGeneration, path, device, dtype)
        return cls(model, load_pretrained(AutoProcessor, path), **kwargs)

    def chat(self, images: Sequence[np.ndarray], prompt: str, text_first: bool = False) -> str:
        import torch
        from PIL import Image

        pictures = [Image.open(io.BytesIO(_jpeg(im))).convert("RGB") for im in images]
        slots, text = [{"type": "image"} for _ in pictures], [{"type": "text", "text": prompt}]
        messages = [{"role": "user", "content": text + slots if text_first else slots + text}]
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=pictures or None, return_tensors="pt").to(
            self.model.device
        )
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[
            0
        ]


def make_vlm(spec: str, device="cpu", dtype=None, flag: str = "--judge"):
    """`qwen:PATH`, `openai:BASE_URL#MODEL` (key from $OPENAI_API_KEY) or `stub:REPLY` → a judge."""
    import os

    kind, _, rest = spec.partition(":")
    judge = None
    if kind == "qwen" and rest:
        judge = QwenVL.from_pretrained(rest, device=device, dtype=dtype)
    elif kind == "openai" and "#" in rest:
        url, model = rest.rsplit("#", 1)
        judge = OpenAIVLM(url, model, os.environ.get("OPENAI_API_KEY"))
    elif kind == "stub":
        judge = StubVLM([rest or "Total Score: 0"])
    if judge is not None:
        judge.name = spec  # the judge's identity in results and resume keys
        return judge
    from freeprop.errors import FreePropInputError

    raise FreePropInputError(
        f"{flag} {spec!r}: use qwen:PATH (Qwen2.5-VL folder), openai:BASE_URL#MODEL (e.g. "
        "openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-VL-72B-Instruct) or stub:REPLY"
    )


class VLMReplyError(ValueError):
    """The VLM never gave a usable reply (after retries)."""


def parse_json_reply(reply: str, keys: Sequence[str] = ()) -> dict | None:
    """The first JSON object in `reply` (```json fences and chatter around it allowed) if it has `keys`."""
    text = re.sub(r"```(?:json)?", "", reply)
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                try:
                    value = json.loads(text[start : end + 1])
                except json.JSONDecodeError:
                    break
                if isinstance(value, dict) and all(k in value for k in keys):
                    return value
                break
        start = text.find("{", start + 1)
    return None


def ask_json(vlm, images: Sequence[np.ndarray], prompt: str, keys: Sequence[str], retries: int = 3) -> dict:
    """Ask until the reply is a JSON object with `keys` (at most `retries` times)."""
    reply = ""
    for _ in range(max(1, retries)):
        reply = vlm.chat(images, prompt)
        value = parse_json_reply(reply, keys)
        if value is not None and all(isinstance(value[k], str) and value[k].strip() for k in keys):
            return value
    raise VLMReplyError(f"no valid JSON with {list(keys)} after {retries} tries; last reply: {reply[:120]!r}")
