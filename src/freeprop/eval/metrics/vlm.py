"""VLM editing score (paper §5.1, the VLM column): EditVerse's judge rubric, 0–9 per frame.

For each sampled frame index, a judge sees the source frame and the edited frame at that index and
the editing instruction, and scores three criteria 0–3 — Prompt Following, Edit Quality,
Background Consistency — whose sum (0–9) is the frame's score; the video's score is the mean over
sampled frames. As in EditVerse's code, a second *extraction* call asks the judge for the total alone
and is retried until the reply is one number 0–9 (here at most `retries` times; after that the
"Total Score:" line of the first reply is used if it parses, else the frame is recorded as failed).

Frame sampling (`sample_vlm_frames`):
- "editverse": `range(0, T, T // 3)` — 3 frames when T is divisible by 3, else 4 (EditVerse's code);
- "ffp10": 10 uniformly spaced frames (the FFP-300K paper, §5.1).

Judges: any VLM of `freeprop.vlm` — `QwenVL` (Qwen2.5-VL through transformers; the paper uses
Qwen2.5-VL-72B), `OpenAIVLM` (any OpenAI-compatible endpoint — vLLM, SGLang, OpenAI; EditVerse used
gpt-4o-2024-11-20 at temperature 0) and `StubVLM` (scripted replies, for tests). EditVerse's code JPEG-encodes RGB frames with OpenCV, which assumes BGR, so its judge saw
red and blue swapped; `swap_red_blue=True` reproduces that, off by default.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import numpy as np

from freeprop.vlm import OpenAIVLM, QwenVL, StubVLM, make_vlm

__all__ = ["OpenAIVLM", "QwenVL", "StubVLM", "VLMEditScore", "make_vlm", "parse_score", "sample_vlm_frames"]

# The rubric (our wording of EditVerse's three criteria and output format; paper §5.1 / EditVerse A.2).
JUDGE_PROMPT = """You are a meticulous evaluator of video editing quality.
You are given two images: the first is a frame of the ORIGINAL video, the second is the same frame of
the EDITED video. The edit that was requested is:
"{instruction}"

Score the edited frame on three criteria, each an integer from 0 to 3:
1. Prompt Following — does the edited frame carry out the requested edit?
   0 = not at all, 1 = barely or wrongly, 2 = mostly, 3 = fully and precisely.
2. Edit Quality — is the edited content natural and free of artifacts, blur, distortion or seams?
   0 = severe artifacts, 1 = clearly visible artifacts, 2 = minor artifacts, 3 = clean and realistic.
3. Background Consistency — are the regions the edit should not touch preserved from the original?
   0 = destroyed, 1 = heavily changed, 2 = slightly changed, 3 = fully preserved.

Answer in exactly this format:
Prompt Following: [0-3] - reason
Edit Quality: [0-3] - reason
Background Consistency: [0-3] - reason
Total Score: [sum of the three]"""

EXTRACT_PROMPT = """Here is an evaluation of an edited video frame:
{evaluation}

Output the overall (total) score of this evaluation, an integer from 0 to 9. Output only the number."""

CRITERIA = ("Prompt Following", "Edit Quality", "Background Consistency")


@dataclass(frozen=True)
class JudgeProtocol:
    """How the judge is asked and answered; recorded with every result.

    - "freeprop" (default): our wording of the rubric (above), images before text, `<video1>`-style
      tags stripped from the instruction, lenient parsing of the extraction reply with a fall-back to
      the evaluation's "Total Score:" line, `--vlm-frames` sampling.
    - "editverse": EditVerse's script — its own prompt texts (read from `--judge-prompts`: they are
      under EditVerse's licence, so not shipped), text before images, the `<text>` instruction with its
      tags as written, frames `range(0, T, T//3)`, RGB frames sent as if BGR (its OpenCV quirk), and the
      extraction retried until the reply is exactly one digit 0–9 (at most `retries`, then the frame is
      a recorded failure; no fall-back).
    - "ffp": the FFP-300K paper's variant — EditVerse's prompts and parsing on 10 uniformly spaced
      frames (`np.linspace(0, T−1, 10)` rounded), Qwen2.5-VL-72B as the judge, colours as they are.
    """

    name: str = "freeprop"
    judge_prompt: str = JUDGE_PROMPT  # with {instruction}
    extract_prompt: str = EXTRACT_PROMPT  # with {evaluation}
    frames: str = "ffp10"
    text_first: bool = False
    keep_tags: bool = False
    strict: bool = False
    retries: int = 3
    swap_red_blue: bool = False

    @classmethod
    def named(cls, name: str, prompts_file=None, frames: str = "ffp10", swap_red_blue: bool = False):
        from freeprop.errors import FreePropInputError

        if name == "freeprop":
            return cls(frames=frames, swap_red_blue=swap_red_blue)
        if name not in ("editverse", "ffp"):
            raise FreePropInputError(f"--protocol {name!r}: choose freeprop, editverse or ffp")
        judge, extract = read_judge_prompts(prompts_file, name)
        return cls(name, judge, extract, "editverse" if name == "editverse" else "ffp10", text_first=True,
                   keep_tags=True, strict=True, retries=10, swap_red_blue=name == "editverse")


def read_judge_prompts(path, protocol: str) -> tuple[str, str]:
    """`{"judge": "...{instruction}...", "extract": "...{evaluation}..."}` from a JSON file the user made
    from EditVerse's `automatic_evaluation/editing_vlm_evaluation.py` (its texts are not shipped)."""
    from pathlib import Path

    from freeprop.errors import FreePropInputError

    help_ = ("copy the two prompt texts of adobe-research/EditVerse (automatic_evaluation/"
             "editing_vlm_evaluation.py) into a JSON file {\"judge\": ..., \"extract\": ...}, marking where the "
             "instruction and the evaluation go with {instruction} and {evaluation}")
    if path is None:
        raise FreePropInputError(f"--protocol {protocol} needs --judge-prompts FILE: {help_}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        judge, extract = data["judge"], data["extract"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FreePropInputError(f"--judge-prompts {path}: unreadable ({type(err).__name__}); {help_}") from None
    if "{instruction}" not in judge or "{evaluation}" not in extract:
        raise FreePropInputError(f"--judge-prompts {path}: {help_}")
    return judge, extract


def fill(template: str, **values: str) -> str:
    """`template` with {name} placeholders replaced; any other braces (JSON in a prompt) left alone."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def parse_digit(reply: str) -> int | None:
    """EditVerse's acceptance rule: the reply is one digit 0–9 and nothing else."""
    match = re.fullmatch(r"\s*([0-9])\s*", reply)
    return int(match.group(1)) if match else None


# --- frame sampling and parsing ----------------------------------------------------------------------


def sample_vlm_frames(num_frames: int, protocol: str = "ffp10") -> list[int]:
    """Frame indices the judge sees: EditVerse's `range(0, T, T//3)` or the paper's 10 uniform frames."""
    if num_frames < 1:
        raise ValueError("the video has no frames")
    if protocol == "editverse":
        return list(range(0, num_frames, max(1, num_frames // 3)))
    if protocol == "ffp10":
        return sorted(set(np.linspace(0, num_frames - 1, min(10, num_frames)).round().astype(int).tolist()))
    raise ValueError(f"unknown VLM frame protocol {protocol!r}; use 'editverse' or 'ffp10'")


def parse_score(reply: str) -> int | None:
    """The 0–9 total in an extraction reply, or None if it is not exactly one such number.

    Accepts what judges really send back: "7", " 7.\\n", "**7**", "Score: 7", "7/9", "Total Score: 7",
    "7.0". Rejects empty replies, refusals, numbers outside 0–9 and replies with several candidates.
    """
    text = reply.strip().replace("*", "").replace("`", "")
    total = re.findall(r"total\s*score\s*[:=]\s*(\d+(?:\.0+)?)", text, flags=re.IGNORECASE)
    if total:
        candidates = total[-1:]
    else:
        text = re.sub(r"(\d+)\s*/\s*9\b", r"\1", text)  # "7/9" → "7"
        candidates = re.findall(r"(?<![\d.])(-?\d+(?:\.0+)?)(?![\d.]*\d)", text)
    values = {int(float(c)) for c in candidates}
    if len(values) != 1:
        return None
    value = values.pop()
    return value if 0 <= value <= 9 else None


def parse_criteria(reply: str) -> dict[str, int]:
    """The three 0–3 sub-scores of a judge reply (those that parse)."""
    scores = {}
    for name in CRITERIA:
        match = re.search(rf"{name}\s*[:=]\s*\**\s*\[?(\d)\]?", reply, flags=re.IGNORECASE)
        if match and int(match.group(1)) <= 3:
            scores[name] = int(match.group(1))
    return scores


# --- the metric --------------------------------------------------------------------------------------


class JudgeUnavailable(RuntimeError):
    """The judge could not be reached (after retries) for one call."""


@dataclass
class VLMResult:
    score: float  # mean 0–9 over the frames that scored (nan if none)
    frames: list[int]
    per_frame: list[float]  # nan where the judge never gave a usable number
    replies: list[str]
    failures: int


class VLMEditScore:
    """EditVerse's VLM editing score with a pluggable judge, asked as `protocol` says (`JudgeProtocol`;
    a string names only the frame sampler of the default protocol)."""

    def __init__(self, judge, protocol: JudgeProtocol | str = "ffp10", retries: int | None = None,
                 swap_red_blue: bool | None = None, backoff: float = 1.0):
        if isinstance(protocol, str):
            protocol = JudgeProtocol(frames=protocol)
        changes = {k: v for k, v in (("retries", retries), ("swap_red_blue", swap_red_blue)) if v is not None}
        self.spec = JudgeProtocol(**{**protocol.__dict__, **changes})
        self.judge = judge
        self.backoff = backoff  # seconds before the first retry of a transport error; doubles each time

    def _chat(self, images, prompt: str) -> str:
        """One judge call; a transport error (connection refused, timeout, a cut reply) is retried with
        backoff, then raised as `JudgeUnavailable` for `__call__` to record against the frame."""
        if self.spec.swap_red_blue:  # EditVerse: cv2.imencode (BGR) on RGB arrays = red and blue swapped
            images = [np.ascontiguousarray(im[..., ::-1]) for im in images]
        for attempt in range(self.spec.retries):
            try:
                return self.judge.chat(images, prompt, text_first=self.spec.text_first)
            except (OSError, TimeoutError, json.JSONDecodeError, KeyError) as err:  # URLError is an OSError
                last = err
                time.sleep(self.backoff * 2**attempt)
        raise JudgeUnavailable(f"judge unreachable after {self.spec.retries} tries ({type(last).__name__}: {last})")

    def score_frame(self, source: np.ndarray, edited: np.ndarray, instruction: str) -> tuple[float, str]:
        """(0–9 score or nan, the judge's evaluation) for one pair of frames."""
        spec = self.spec
        evaluation = self._chat([source, edited], fill(spec.judge_prompt, instruction=instruction))
        parse = parse_digit if spec.strict else parse_score
        for _ in range(spec.retries):  # 2. the extraction step, retried until it is one number 0–9
            value = parse(self._chat([], fill(spec.extract_prompt, evaluation=evaluation)))
            if value is not None:
                return float(value), evaluation
        if spec.strict:  # EditVerse keeps asking; after `retries` the frame is a recorded failure
            return float("nan"), evaluation
        fallback = parse_score(evaluation) if re.search(r"total\s*score", evaluation, re.IGNORECASE) else None
        return (float(fallback) if fallback is not None else float("nan")), evaluation

    def __call__(self, source: np.ndarray, edited: np.ndarray, instruction: str) -> VLMResult:
        """`source`, `edited`: uint8 [T, H, W, 3] (frames compared at the same index, up to the shorter)."""
        frames = sample_vlm_frames(min(len(source), len(edited)), self.spec.frames)
        per_frame, replies = [], []
        for t in frames:
            try:
                value, reply = self.score_frame(source[t], edited[t], instruction)
            except JudgeUnavailable as err:  # recorded for this frame; the run goes on
                value, reply = float("nan"), str(err)
            per_frame.append(value)
            replies.append(reply)
        valid = [v for v in per_frame if not np.isnan(v)]
        return VLMResult(
            score=float(np.mean(valid)) if valid else float("nan"),
            frames=frames,
            per_frame=per_frame,
            replies=replies,
            failures=len(per_frame) - len(valid),
        )
