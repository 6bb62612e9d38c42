"""Run the metrics over a benchmark's cases for one or more methods, with an embedding cache.

Metric names (paper Table 1 order first):

| name | what | needs |
|---|---|---|
| clip | CLIP temporal consistency (fraction) | CLIP ViT-L/14 |
| dino | DINO temporal consistency (fraction) | DINOv2-base |
| frame | Frame text alignment, 100·cos with the target prompt | CLIP ViT-L/14 |
| video | Video text alignment (ViCLIP, 8 frames, 32 tokens) | ViCLIP-L/14 + CLIP tokenizer |
| pick | PickScore, mean over frames | PickScore_v1 + CLIP-H processor |
| vlm | VLM editing score 0–9 (EditVerse rubric) | a judge |
| motion | flow EPE to the source's motion, px (lower is better) | — (OpenCV DIS) |
| warp | warping error of the output under the source's flow (lower is better) | — |
| gt | PSNR / SSIM / masked PSNR / first-frame PSNR / flicker ratio vs the target | pair data |

Each case's results go to `OUT/cases/<method>/<case_id>.json` as soon as it is scored, so a killed
run resumes where it stopped and several processes (`accelerate launch`) can split the cases; the
main process then writes the report (see `eval/report.py`). Per-frame embeddings are cached under
`cache_dir` keyed by model, video file (path, size, mtime) or frame bytes, and sampling, so a second
run — another method set, a new metric — does not re-embed videos it has seen.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from freeprop.defaults import BASELINES
from freeprop.errors import FreePropInputError
from freeprop.eval.benchmarks import Bench, Case
from freeprop.video import atomic_path, read_image, read_video

PAPER_METRICS = ("clip", "dino", "frame", "video", "pick", "vlm")
CLASSIC_METRICS = ("motion", "warp", "gt")
ALL_METRICS = PAPER_METRICS + CLASSIC_METRICS
LEARNED = {"clip", "dino", "frame", "video", "pick", "vlm"}


def parse_metrics(text: str, has_targets: bool, has_judge: bool) -> tuple[str, ...]:
    """`all` (default: everything that can run), `paper`, `classic`, or a comma list of names."""
    from freeprop.errors import FreePropInputError

    if text == "all":
        names = [m for m in ALL_METRICS if (m != "vlm" or has_judge) and (m != "gt" or has_targets)]
    elif text == "paper":
        names = [m for m in PAPER_METRICS if m != "vlm" or has_judge]
    elif text == "classic":
        names = [m for m in CLASSIC_METRICS if m != "gt" or has_targets]
    else:
        names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise FreePropInputError(
            f"--metrics: unknown {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}"
        )
    if "vlm" in names and not has_judge:
        raise FreePropInputError("--metrics vlm needs a judge: --judge qwen:PATH or openai:URL#MODEL")
    if "gt" in names and not has_targets:
        raise FreePropInputError("--metrics gt needs ground-truth targets (a pairs: benchmark)")
    return tuple(names)


def metric_model_paths(paths: dict) -> dict[str, list[tuple[str, str | None]]]:
    """(option, model folder or id) that each learned metric needs; None = not given."""
    from freeprop.eval.metrics import embedding as emb

    clip = paths.get("clip") or emb.CLIP_L14
    return {
        "clip": [("--clip", clip)],
        "frame": [("--clip", clip)],
        "dino": [("--dino", paths.get("dino") or emb.DINOV2_BASE)],
        "pick": [("--pickscore", paths.get("pickscore") or emb.PICKSCORE),
                 ("--pickscore-processor", paths.get("pickscore_processor") or emb.PICKSCORE_PROCESSOR)],
        "video": [("--viclip", paths.get("viclip")), ("--viclip-tokenizer", paths.get("viclip_tokenizer") or clip)],
    }


def available_metrics(metrics: tuple[str, ...], paths: dict, explicit: bool) -> tuple[tuple[str, ...], list[str]]:
    """Check every metric's models before anything loads (no network retries): a metric the user named
    whose model is missing is an error at once; under `all`/`paper` it is left out, with a note."""
    from freeprop.errors import FreePropInputError
    from freeprop.hub import check_available

    kept, notes, needs = [], [], metric_model_paths(paths)
    for metric in metrics:
        problems = []
        for option, path in needs.get(metric, []):
            try:
                if path is None:
                    raise FreePropInputError(f"{option}: not given (ViClip-InternVid-10M-FLT.pth, from "
                                             "HF OpenGVLab/VBench_Used_Models)")
                check_available(path, option)
            except FreePropInputError as err:
                problems.append(str(err))
        if problems and explicit:
            raise FreePropInputError(f"--metrics {metric}: {problems[0]}")
        if problems:
            notes.append(f"metric {metric} left out: {problems[0]}")
        else:
            kept.append(metric)
    return tuple(kept), notes


# --- embedding cache ---------------------------------------------------------------------------------


def video_key(video: Path | np.ndarray) -> str:
    """Identity of a video for the cache: path + size + mtime for files, a hash of the frames otherwise."""
    if isinstance(video, np.ndarray):
        return "frames:" + hashlib.sha1(np.ascontiguousarray(video).tobytes()).hexdigest()
    stat = Path(video).stat()
    return f"file:{Path(video).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


@dataclass
class EmbeddingCache:
    folder: Path | None
    hits: int = 0
    misses: int = 0

    def get(self, model: str, video: str, what: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if self.folder is None:
            self.misses += 1
            return compute()
        key = hashlib.sha1(f"{model}|{video}|{what}".encode()).hexdigest()
        path = self.folder / key[:2] / f"{key}.npy"
        if path.is_file():
            self.hits += 1
            return np.load(path)
        self.misses += 1
        value = np.asarray(compute(), dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, value)
        return value


# --- the models behind the learned metrics ----------------------------------------------------------


@dataclass
class MetricModels:
    """Scorers for the learned metrics (None where not needed). Build with `load` or inject (tests)."""

    clip_embedder: object = None  # ImageEmbedder (CLIP vision pooler)
    dino_embedder: object = None  # ImageEmbedder (DINOv2 pooler)
    clip_scorer: object = None  # TextImageScorer (CLIP-L/14)
    pickscore: object = None  # TextImageScorer (PickScore_v1)
    viclip: object = None  # ViCLIPScorer
    vlm: object = None  # VLMEditScore
    dtype: str = "torch.float32"  # of the metric models: part of every cache and resume key

    def identity(self) -> dict:
        """What decides the numbers: each loaded model's name, the dtype, the judge and its protocol."""
        from freeprop.eval.metrics.embedding import processor_backend

        out = {"dtype": self.dtype, "processors": {}}
        for field_name in ("clip_embedder", "dino_embedder", "clip_scorer", "pickscore", "viclip"):
            model = getattr(self, field_name)
            if model is not None:
                out[field_name] = getattr(model, "name", type(model).__name__)
                if getattr(model, "processor", None) is not None:  # Pillow or torchvision resampling
                    out["processors"][field_name] = processor_backend(model.processor)
        if self.vlm is not None:
            judge = self.vlm.judge
            spec = self.vlm.spec
            prompts = hashlib.sha1((spec.judge_prompt + spec.extract_prompt).encode()).hexdigest()[:12]
            out["vlm"] = {"judge": getattr(judge, "name", type(judge).__name__), "protocol": spec.name,
                          "frames": spec.frames, "text_first": spec.text_first, "keep_tags": spec.keep_tags,
                          "strict": spec.strict, "swap_red_blue": spec.swap_red_blue, "retries": spec.retries,
                          "prompts_sha1": prompts}
        return out

    @classmethod
    def load(
        cls,
        metrics,
        paths: dict,
        device="cpu",
        dtype=None,
        judge: str | None = None,
        vlm_frames="ffp10",
        swap_red_blue=False,
        protocol: str = "freeprop",
        judge_prompts=None,
    ):
        """Load what `metrics` need; `paths` may override clip / dino / pickscore / pickscore_processor / viclip / viclip_tokenizer."""
        import torch

        from freeprop.eval.metrics import embedding as emb

        dtype = dtype or torch.float32  # EditVerse scores in fp32: bf16 moved Frame +0.10 and Pick −0.29
        clip = paths.get("clip") or emb.CLIP_L14
        models = cls(dtype=str(dtype))
        if "clip" in metrics:
            models.clip_embedder = emb.load_clip_embedder(clip, device, dtype)
        if "dino" in metrics:
            models.dino_embedder = emb.load_dino_embedder(paths.get("dino") or emb.DINOV2_BASE, device, dtype)
        if "frame" in metrics:
            models.clip_scorer = emb.load_clip_scorer(clip, device, dtype)
        if "pick" in metrics:
            models.pickscore = emb.load_pickscore(
                paths.get("pickscore") or emb.PICKSCORE,
                paths.get("pickscore_processor") or emb.PICKSCORE_PROCESSOR,
                device,
                dtype,
            )
        if "video" in metrics:
            from freeprop.errors import FreePropInputError
            from freeprop.eval.metrics.viclip import load_viclip_scorer

            if not paths.get("viclip"):
                raise FreePropInputError(
                    "--metrics video needs --viclip PATH (ViClip-InternVid-10M-FLT.pth from HF OpenGVLab/VBench_Used_Models)"
                )
            models.viclip = load_viclip_scorer(
                paths["viclip"], paths.get("viclip_tokenizer") or clip, device, dtype
            )
        if "vlm" in metrics:
            from freeprop.eval.metrics.vlm import JudgeProtocol, VLMEditScore, make_vlm

            spec = JudgeProtocol.named(protocol, judge_prompts, vlm_frames, swap_red_blue)  # checked first
            models.vlm = VLMEditScore(make_vlm(judge, device, dtype), spec)
        return models


# --- scoring one video -------------------------------------------------------------------------------


@dataclass
class Scorer:
    models: MetricModels
    metrics: tuple[str, ...]
    cache: EmbeddingCache = field(default_factory=lambda: EmbeddingCache(None))
    _text: dict = field(default_factory=dict)

    def key(self, case: Case, prediction: Path, resample: bool, own_source: Path | None = None) -> str:
        """Everything that changes a case's numbers: the case, both videos' identities, the metrics, the
        models (names, dtype, judge and protocol) and the resampling. A stored row is reused only when
        its key is this one."""
        parts = {
            "case": [case.case_id, case.target_prompt, case.instruction, case.task],
            "source": video_key(case.source) if not isinstance(case.source, Path) or case.source.is_file() else None,
            "prediction": video_key(prediction),
            "own_source": None if own_source is None else video_key(own_source),
            "metrics": sorted(self.metrics),
            "models": self.models.identity(),
            "resample": resample,
        }
        return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _cached(self, model, output_key: str, kind: str, compute):
        return self.cache.get(f"{model.name}|{self.models.dtype}", output_key, kind, compute)

    def _text_embedding(self, scorer, text: str) -> np.ndarray:
        key = (scorer.name, text)
        if key not in self._text:
            self._text[key] = scorer.text_embedding(text)
        return self._text[key]

    def score(
        self, case: Case, output: np.ndarray, output_key: str, source: np.ndarray | None
    ) -> dict[str, float]:
        """Every requested metric of one output video (uint8 [F, H, W, 3]) for `case`."""
        from freeprop.eval.metrics.embedding import temporal_consistency
        from freeprop.eval.metrics.motion import flow_epe, match_source, warping_error

        m, out = self.models, {}
        frames = list(output)
        if "clip" in self.metrics:
            f = self._cached(m.clip_embedder, output_key, "pooler", lambda: m.clip_embedder(frames))
            out["clip"] = temporal_consistency(f)
        if "dino" in self.metrics:
            f = self._cached(m.dino_embedder, output_key, "pooler", lambda: m.dino_embedder(frames))
            out["dino"] = temporal_consistency(f)
        if "frame" in self.metrics:
            f = self._cached(m.clip_scorer, output_key, "image", lambda: m.clip_scorer.image_embeddings(frames))
            out["frame"] = m.clip_scorer.score(f, self._text_embedding(m.clip_scorer, case.target_prompt))
        if "pick" in self.metrics:
            f = self._cached(m.pickscore, output_key, "image", lambda: m.pickscore.image_embeddings(frames))
            out["pick"] = m.pickscore.score(f, self._text_embedding(m.pickscore, case.target_prompt))
        if "video" in self.metrics:
            f = self._cached(m.viclip, output_key, "video8", lambda: m.viclip.video_embedding(output))
            out["video"] = m.viclip.score(f, self._text_embedding(m.viclip, case.target_prompt))
        if "vlm" in self.metrics:
            raw = case.meta.get("raw_instruction") if m.vlm.spec.keep_tags else None
            result = m.vlm(source, output, raw or case.instruction)
            out["vlm"], out["vlm_failures"] = result.score, result.failures
        if "motion" in self.metrics:
            out["motion"] = flow_epe(output, source)
        if "warp" in self.metrics:
            out["warp"] = warping_error(*match_source(output, source))
        if "gt" in self.metrics and case.target is not None:
            from freeprop.eval.metrics.ground_truth import all_metrics

            matched, target = match_source(output, case.target)
            source_cut = source[: len(target)] if source is not None else target
            gt = all_metrics(
                matched, target, source_cut, None if case.mask is None else case.mask[: len(target)]
            )
            gt.pop("warping_error", None)  # the `warp` metric above
            out |= gt
        return out


# --- running a benchmark -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShippedPredictions:
    """A method whose video the benchmark ships inside each case folder, scored by its file name
    (UNICBench: `VACE.mp4`, `anyv2v.mp4`, `ours.mp4` beside `origin.mp4`)."""

    name: str  # the file's stem, matched case-insensitively

    def __str__(self) -> str:
        return f"the benchmark's {self.name}.mp4 files"


_BENCH_INPUTS = ("video1.mp4", "origin.mp4", "reference.mp4")


def find_prediction(where: Path | ShippedPredictions, case: Case) -> Path | None:
    """`<folder>/<id>/generate.mp4` (EditVerse layout), `<folder>/<id>.mp4`, the one video in `<folder>/<id>/`,
    or, for a shipped method, `<case folder>/<name>.mp4`. A folder holding a benchmark case (its source
    video) is not a method's output folder: picking "its one video" there would score another method's
    video under this name, so it is refused (use `--shipped NAME`)."""
    if isinstance(where, ShippedPredictions):
        folder = case.meta.get("folder")
        videos = sorted(folder.glob("*.mp4")) if folder is not None else []
        return next((v for v in videos if v.stem.lower() == where.name.lower()), None)
    for candidate in (where / case.case_id / "generate.mp4", where / f"{case.case_id}.mp4", where / f"{case.case_id}.gif"):
        if candidate.is_file():
            return candidate
    if (where / case.case_id).is_dir():
        videos = sorted((where / case.case_id).glob("*.mp4"))
        if any(v.name in _BENCH_INPUTS[1:] for v in videos):
            raise FreePropInputError(
                f"{where / case.case_id} is a benchmark case folder, not a method's outputs: score the videos "
                "it ships by name (--shipped VACE, --shipped anyv2v, ...)"
            )
        videos = [v for v in videos if v.name not in _BENCH_INPUTS]
        if len(videos) == 1:
            return videos[0]
    return None


def method_source(where: Path | ShippedPredictions, case_id: str) -> Path | None:
    """The source a method edited, when it ships one beside its output (EditVerse's results layout:
    `<pred>/<id>/video1.mp4`); metrics against the source then see the frames the method saw."""
    if isinstance(where, ShippedPredictions):
        return None  # shipped beside the benchmark's own source
    own = where / case_id / "video1.mp4"
    return own if own.is_file() else None


def load_frames(video: Path | np.ndarray) -> np.ndarray:
    return video if isinstance(video, np.ndarray) else read_video(video).frames


def conform(frames: np.ndarray, reference: np.ndarray | None, resample: bool) -> tuple[np.ndarray, str | None]:
    """A prediction against its case's video (the ground truth, else the source): the same frame count
    and size, or an error for that case — never a silent cut, which would score a 1-frame "video" as
    perfectly steady. With `resample`, frames are picked uniformly and resized, and the row says so."""
    if reference is None or (len(frames) == len(reference) and frames.shape[1:3] == reference.shape[1:3]):
        return frames, None
    (h, w), (rh, rw) = frames.shape[1:3], reference.shape[1:3]
    what = f"{len(frames)} frames at {h}x{w}; the case has {len(reference)} at {rh}x{rw}"
    if not resample:
        raise FreePropInputError(f"prediction has {what} (pass --resample to resample it, reported per case)")
    pick = np.linspace(0, len(frames) - 1, len(reference)).round().astype(int)
    frames = np.stack([cv2.resize(f, (rw, rh), interpolation=cv2.INTER_AREA) for f in frames[pick]])
    return frames, f"resampled from {what}"


def load_first_frame(frame: Path | np.ndarray) -> np.ndarray:
    return frame if isinstance(frame, np.ndarray) else read_image(frame)


def _result_path(out_dir: Path, method: str, case_id: str) -> Path:
    return out_dir / "cases" / method / f"{case_id}.json"


def evaluate(
    bench: Bench,
    predictions: dict[str, Path | ShippedPredictions],
    scorer: Scorer,
    out_dir: Path,
    progress: bool = True,
    resample: bool = False,
) -> list[dict]:
    """Score every (method, case) not already scored; returns all result rows (this process's share).
    A prediction of another length or size is an error for its case unless `resample` (see `conform`)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from freeprop.errors import FreePropInputError

    state = PartialState()
    rows = []
    with state.split_between_processes(bench.cases) as my_cases:
        jobs = [(method, case) for case in my_cases for method in predictions]
        decoded: tuple[str | None, np.ndarray | None] = (None, None)
        for method, case in tqdm(jobs, desc="eval", disable=not progress or not state.is_local_main_process):
            path = _result_path(out_dir, method, case.case_id)
            try:
                prediction = find_prediction(predictions[method], case)
            except FreePropInputError as err:
                prediction, refused = None, str(err)
            else:
                refused = None
            own = method_source(predictions[method], case.case_id)
            key = scorer.key(case, prediction, resample, own) if prediction is not None else None
            if key is not None and path.is_file():
                row = json.loads(path.read_text())
                if row.get("key") == key and "error" not in row:  # the same inputs, models and metrics
                    rows.append(row)
                    continue
            row = {"method": method, "case_id": case.case_id, "task": case.task, "key": key}
            try:
                if prediction is None:
                    raise FreePropInputError(refused or f"no prediction in {predictions[method]} for case {case.case_id}")
                if decoded[0] != case.case_id:  # jobs are case-major: decode each source once
                    readable = not isinstance(case.source, Path) or case.source.is_file()
                    decoded = (case.case_id, load_frames(case.source) if readable else None)
                source = load_frames(own) if own is not None else decoded[1]
                if source is None and any(m in scorer.metrics for m in ("vlm", "motion", "warp")):
                    raise FreePropInputError(f"source video {case.source} not found")
                frames, note = conform(load_frames(prediction), case.target if case.target is not None else source,
                                       resample)
                if note:
                    row["resampled"] = note
                row["resolution"], row["frames"] = "x".join(map(str, frames.shape[1:3])), len(frames)
                row |= scorer.score(case, frames, video_key(prediction), source)
            except FreePropInputError as err:
                row["error"] = str(err)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(row, default=_json_float))
            rows.append(row)
    state.wait_for_everyone()
    return rows


def _json_float(value):
    return float(value)


def collect(out_dir: Path, methods, case_ids) -> list[dict]:
    """The result rows of this run — `methods` × `case_ids` — written by every process (rows an earlier
    run left for other cases are not this run's)."""
    rows = []
    for method in methods:
        for case_id in case_ids:
            path = _result_path(out_dir, method, case_id)
            if path.is_file():
                rows.append(json.loads(path.read_text()))
    return rows


def _most_common(values):
    from collections import Counter

    counts = Counter(v for v in values if v is not None)
    return counts.most_common(1)[0][0] if counts else None


def provenance(models: MetricModels, bench: Bench, metrics, resample: bool) -> dict:
    """How the numbers were made: models, dtype, judge and VLM frame protocol, image-processor backend,
    the case list and package versions (so two reports can be told comparable or not)."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    versions = {}
    for package in ("freeprop", "torch", "transformers", "diffusers", "numpy", "opencv-python-headless"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {
        "metrics": list(metrics),
        "models": models.identity(),
        "image_processors": models.identity()["processors"],  # Pillow classes (`pillow_processor`)
        "torchvision_installed": find_spec("torchvision") is not None,
        "resample": resample,
        "cases": [c.case_id for c in bench.cases],
        "versions": versions,
    }


def summarize(rows: list[dict]) -> dict:
    """Per method: the mean of each metric over cases (NaN/inf and failed cases left out), per task too."""

    def means(subset):
        keys = sorted(
            {
                k
                for r in subset
                for k, v in r.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        )
        result = {}
        for key in keys:
            values = [
                r[key] for r in subset if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
            ]
            if values:
                result[key] = float(np.mean(values))
        return result

    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ok = [r for r in mine if "error" not in r]
        summary[method] = {
            "cases": len(ok),
            "errors": len(mine) - len(ok),
            "resolution": _most_common(r.get("resolution") for r in ok),  # Table 1's Resolution / Frames
            "frames": _most_common(r.get("frames") for r in ok),
            "mean": means(ok),
            "per_task": {
                task: means([r for r in ok if r["task"] == task]) for task in sorted({r["task"] for r in ok})
            },
        }
    return summary


def write_predictions(bench: Bench, folder: Path, edit, max_frames: int | None = None, progress: bool = True,
                      desc: str = "predict") -> list[str]:
    """`edit(source, first_frame) → frames` on every case that has an edited first frame and a source,
    → `folder/<id>.mp4` (existing ones kept; cases split across processes). Returns the ids skipped."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from freeprop.video import resize_cover_crop, write_video

    state = PartialState()
    skipped, todo = [], []
    for case in bench.cases:
        runnable = case.first_frame is not None and (not isinstance(case.source, Path) or case.source.is_file())
        if not runnable:
            skipped.append(case.case_id)
        elif not (folder / f"{case.case_id}.mp4").is_file():
            todo.append(case)
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        with state.split_between_processes(todo) as mine:
            for case in tqdm(mine, desc=desc, disable=not progress or not state.is_local_main_process):
                source = load_frames(case.source)[:max_frames]
                first = resize_cover_crop(load_first_frame(case.first_frame), *source.shape[1:3])[0]
                fps = case.meta.get("fps") or (
                    read_video(case.source, max_frames=1).fps if isinstance(case.source, Path) else 16
                )
                write_video(folder / f"{case.case_id}.mp4", edit(source, first), fps=fps)
        state.wait_for_everyone()
    return skipped


def baseline_edit(name: str):
    """The weight-free reference methods, as `edit(source, first) → frames`."""
    if name == "flow-warp":
        from freeprop.baselines.flow_warp import propagate

        return propagate
    if name == "copy-source":
        return lambda source, first: source
    if name == "frozen-first-frame":
        return lambda source, first: np.repeat(first[None], len(source), axis=0)
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


def predict_with_freeprop(
    bench: Bench,
    folder: Path,
    model: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    dtype=None,
    max_frames: int | None = None,
    progress: bool = True,
    size: tuple[int, int] | None = None,
) -> list[str]:
    """FreeProp on every runnable case (`write_predictions`), at the source's size or `size` (H, W)."""
    import torch

    from freeprop.demo import default_model
    from freeprop.pipeline import load_pipeline

    pipe = None
    height, width = size or (None, None)

    def edit(source, first):
        nonlocal pipe
        if pipe is None:  # loaded only when a case needs it
            pipe = load_pipeline(model or default_model(), torch_dtype=dtype or torch.float32).to(device)
            pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(seed)
        return pipe(source, first, num_inference_steps=steps, generator=generator, height=height, width=width).frames

    return write_predictions(bench, folder, edit, max_frames, progress, desc="FreeProp")


def run(
    bench: Bench,
    predictions: dict[str, Path | ShippedPredictions],
    scorer: Scorer,
    out_dir: Path,
    thumbnails: int = 24,
    notes: list[str] = (),
    progress: bool = True,
    resample: bool = False,
) -> dict:
    """Evaluate, then (main process) write the report; returns the summary."""
    from accelerate import PartialState

    from freeprop.eval.report import thumbnail_strip, write_report

    evaluate(bench, predictions, scorer, out_dir, progress, resample)
    if not PartialState().is_main_process:
        return {}
    rows = collect(out_dir, predictions, [case.case_id for case in bench.cases])
    summary = summarize(rows)
    strips: dict[str, dict[str, np.ndarray]] = {}
    for case in bench.cases[:thumbnails]:
        row: dict[str, np.ndarray] = {}
        if not isinstance(case.source, Path) or case.source.is_file():
            row["source"] = thumbnail_strip(load_frames(case.source))
        for method, folder in predictions.items():
            try:
                prediction = find_prediction(folder, case)
                if prediction is not None:
                    row[method] = thumbnail_strip(load_frames(prediction))
            except FreePropInputError:  # its row already records the error; the report goes on
                continue
        if case.target is not None:
            row["ground truth"] = thumbnail_strip(case.target)
        strips[case.case_id] = row
    hit_rate = scorer.cache.hits / max(1, scorer.cache.hits + scorer.cache.misses)
    notes = [
        *notes,
        f"embedding cache: {scorer.cache.hits} hits, {scorer.cache.misses} misses ({hit_rate:.0%})",
    ]
    write_report(out_dir, rows, summary, bench.kind, strips, notes, title=f"{bench.kind}:{bench.root}",
                 provenance=provenance(scorer.models, bench, scorer.metrics, resample))
    return summary
