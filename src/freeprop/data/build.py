"""`freeprop data build`: the two-track FFP-300K construction pipeline (paper §3), resumable.

Local editing track (per source video, for each of `local.tasks`):
    standardize → identify_object → captions → ground_and_track → vace → discriminate_task (swap)
    → finish → quality_filter → verify
Global stylization track (per (content image, style image) pair):
    cinematic_caption → image_to_video → style_caption → depth → vace → finish → quality_filter → verify

Then, on the driver: dedup (perceptual hashes of the source's and the edit's first / middle / last
frames) and the pair writer. Every sample has a deterministic id (its input paths and task), its
media are written before its index row commits, and a re-run with `--resume` skips every committed
sample (ok, failed or filtered) — a kill loses at most the shard being written, never a committed
sample. Per-sample failures are recorded with the stage and reason and never stop the job.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from freeprop.config import load_dataclass
from freeprop.data.pairs import read_packed_record
from freeprop.data.stages.base import new_sample, stable_id
from freeprop.errors import FreePropInputError
from freeprop.video import atomic_path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LOCAL_TASKS = ("swap", "removal")


# --- config ------------------------------------------------------------------------------------------


def check_clip_shape(section: str, frames: int, fps: float, size: tuple[int, int] | None = None) -> None:
    """Wan's VAE and VACE take 4k+1 frames and sides that are multiples of 16: checked before any model
    runs, so a build does not fail on its first sample an hour in."""
    if frames < 1 or (frames - 1) % 4:
        raise FreePropInputError(f"{section}.frames = {frames}: Wan takes 4k+1 frames (e.g. 81, 49, 33)")
    if fps <= 0:
        raise FreePropInputError(f"{section}.fps must be > 0, got {fps}")
    if size is not None and any(side < 16 or side % 16 for side in size):
        raise FreePropInputError(f"{section}.height/width = {size[0]}x{size[1]}: multiples of 16 (e.g. 720x1280)")


@dataclass(frozen=True)
class LocalTrack:
    sources: str | None = None  # folder of videos, or a .txt/.csv list (path[,caption]; e.g. Koala-36M rows)
    tasks: tuple[str, ...] = LOCAL_TASKS
    frames: int = 81  # paper: 81 frames at 720p
    fps: float = 16.0
    height: int = 720
    width: int = 1280
    keep_orientation: bool = True  # portrait sources become height×width swapped (1280×720), not cropped
    use_source_captions: bool = False  # a caption column in `sources` replaces the paper's Original Caption
    # prompt (§7.1) only when asked: the paper captions every clip with the VLM

    def __post_init__(self):
        bad = set(self.tasks) - set(LOCAL_TASKS)
        if bad:
            raise FreePropInputError(f"local.tasks: unknown {sorted(bad)}; choose from {LOCAL_TASKS}")
        check_clip_shape("local", self.frames, self.fps, (self.height, self.width))


@dataclass(frozen=True)
class GlobalTrack:
    omnistyle: str | None = None  # OmniStyle-150k root: content/, style/, target/<content>&&<style>.png
    pairs: str | None = None  # or a CSV of content_image,style_image
    frames: int = 81
    fps: float = 16.0
    max_area: int = 720 * 1280  # videos are 16:9 (9:16 for portrait images) at this area: 720p by default
    min_side: int = 256  # ours, not the paper's: content / style images smaller than this fail the sample

    def __post_init__(self):
        check_clip_shape("stylization", self.frames, self.fps)
        if self.max_area < 16 * 16 or self.min_side < 16:
            raise FreePropInputError("stylization.max_area / min_side are too small to make a video")


@dataclass(frozen=True)
class Models:
    vlm: str = "qwen:Qwen/Qwen2.5-VL-72B-Instruct"  # or openai:URL#MODEL (vLLM serving it)
    detector: str = "IDEA-Research/grounding-dino-base"
    tracker: str = "facebook/sam2.1-hiera-large"
    vace: str = "Wan-AI/Wan2.1-VACE-14B-diffusers"
    vace_lora: str | None = None  # the removal fine-tune of §3.3
    i2v: str = "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers"
    depth: str = "depth-anything/Depth-Anything-V2-Large-hf"
    depth_backend: str = "transformers"  # or video-depth-anything (path to its .pth in `depth`)
    device: str = "cuda"
    dtype: str = "bfloat16"
    # a node-local folder (local NVMe): each node copies every model there once before its workers
    # load it (a file lock makes the other workers wait), instead of every worker reading the shared
    # file system (Cosmos-Curate's per-node staging; ours: copies, keyed by the source files). None: off
    stage_dir: str | None = None


@dataclass(frozen=True)
class Synthesis:
    steps: int = 50
    guidance: float = 5.0
    flow_shift: float = 5.0  # 720p (3.0 for 480p)
    erode_px: int = 8  # swap mask erosion at 720p (scaled with the frame)
    dilate_px: int = 8  # removal mask ∪ bbox dilation at 720p
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    max_coverage: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class Quality:
    filter: bool = True  # §3.3 VLM screening
    verify: bool = True  # final semantic verification
    dedup: bool = True
    dedup_bits: int = 6  # max Hamming distance (of 64) on every hashed frame to count as a duplicate
    retries: int = 3  # VLM JSON retries
    transient_retries: int = 2  # extra passes for samples that failed transiently (server down, OOM)
    transient_backoff: float = 30.0  # seconds before the first extra pass, doubling after each


@dataclass(frozen=True)
class Execution:
    executor: str = "local"
    workers: int = 1  # local: samples in flight
    chunk_size: int = 32  # local: samples taken stage by stage, models released between (0: all resident)
    ray_address: str | None = None
    ray_num_cpus: int | None = None
    stage_workers: dict = field(default_factory=dict)  # ray: actors per stage name, e.g. {vace: 8}
    stage_batch_sizes: dict = field(
        default_factory=dict
    )  # ray: rows per batch per stage name, e.g. {standardize: 8}
    shard_size: int = 64

    def __post_init__(self):
        for key in ("workers", "shard_size"):
            if getattr(self, key) < 1:
                raise FreePropInputError(f"execution.{key} must be ≥ 1, got {getattr(self, key)}")
        if self.chunk_size < 0:
            raise FreePropInputError(f"execution.chunk_size must be ≥ 0 (0: every model resident), got {self.chunk_size}")


@dataclass(frozen=True)
class BuildConfig:
    output: str = "data/ffp300k"
    work: str | None = None  # intermediates (default OUTPUT-work)
    split: str = "train"
    local: LocalTrack = LocalTrack()
    stylization: GlobalTrack = GlobalTrack()  # the global stylization track
    models: Models = Models()
    synthesis: Synthesis = Synthesis()
    quality: Quality = Quality()
    execution: Execution = Execution()


def load_build_config(path, overrides=()) -> BuildConfig:
    return load_dataclass(BuildConfig, path, list(overrides))


# --- inputs → samples --------------------------------------------------------------------------------


def _read_list(path: Path) -> list[tuple[str, str]]:
    """(path, caption) rows from a folder, a .txt (one path per line) or a .csv (path[,caption], header optional)."""
    if path.is_dir():
        return [(str(p), "") for p in sorted(path.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES]
    if not path.is_file():
        raise FreePropInputError(f"{path}: no such folder or list file")
    rows = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle)):
            if not row or row[0].startswith("#") or (number == 0 and not Path(row[0].strip()).suffix):
                continue  # blank, comment, or a header row (its first cell is a column name, not a file)
            file = Path(row[0].strip())
            file = file if file.is_absolute() else path.parent / file
            rows.append((str(file), row[1].strip() if len(row) > 1 else ""))
    return rows


def _style_pairs(track: GlobalTrack) -> list[tuple[str, str]]:
    if track.omnistyle:
        root = Path(track.omnistyle)
        if not (root / "target").is_dir():
            raise FreePropInputError(f"{root}: not an OmniStyle root (content/, style/, target/)")
        pairs = []
        for target in sorted((root / "target").iterdir()):
            if "&&" not in target.stem:
                continue
            content, style = target.stem.split("&&", 1)
            found = [
                next(iter(sorted((root / d).glob(f"{n}.*"))), None)
                for d, n in (("content", content), ("style", style))
            ]
            if all(found):
                pairs.append((str(found[0]), str(found[1])))
        return pairs
    if track.pairs:
        base = Path(track.pairs).parent
        return [(a, str(b if Path(b).is_absolute() else base / b)) for a, b in _read_list(Path(track.pairs))]
    return []


def make_samples(cfg: BuildConfig) -> list[dict[str, str]]:
    work_root = Path(cfg.work or f"{cfg.output}-work")
    samples = []
    if cfg.local.sources:
        for path, caption in _read_list(Path(cfg.local.sources)):
            source_id = stable_id(str(Path(path).resolve()))
            for task in cfg.local.tasks:
                samples.append(
                    new_sample(
                        sample_id=stable_id(source_id, task),
                        source_id=source_id,
                        track="local",
                        task=task,
                        split=cfg.split,
                        source=path,
                        caption_in=caption if cfg.local.use_source_captions else "",
                        work=str(work_root / source_id),
                    )  # fmt: skip
                )
    for content, style in _style_pairs(cfg.stylization):
        source_id = stable_id(str(Path(content).resolve()))
        samples.append(
            new_sample(
                sample_id=stable_id(source_id, str(Path(style).resolve()), "stylization"),
                source_id=source_id,
                track="global",
                task="stylization",
                split=cfg.split,
                content_image=content,
                style_image=style,
                work=str(work_root / source_id),
            )  # fmt: skip
        )
    if not samples:
        raise FreePropInputError(
            "nothing to build: set local.sources and/or stylization.omnistyle / stylization.pairs"
        )
    return samples


# --- stages ------------------------------------------------------------------------------------------


def build_stages(cfg: BuildConfig, injected: dict | None = None) -> list:
    """The stage list of both tracks; `injected` maps a model name (vlm, detector, tracker, vace, i2v,
    depth) to a ready object (tests), otherwise the path in `cfg.models` is loaded in each worker."""
    from freeprop.data.stages import global_track, grounding, pack, standardize, synthesis, vlm_stages

    m, s, q, inj = cfg.models, cfg.synthesis, cfg.quality, injected or {}
    dev = dict(device=m.device, dtype=m.dtype)
    vlm = dict(vlm=inj.get("vlm", m.vlm), retries=q.retries, **dev)
    stages = [
        standardize.Standardize(cfg.local.frames, cfg.local.fps, cfg.local.height, cfg.local.width,
                                cfg.local.keep_orientation),
        vlm_stages.IdentifyObject(**vlm),
        vlm_stages.Captions(**vlm),
        grounding.GroundAndTrack(
            inj.get("detector", m.detector),
            inj.get("tracker", m.tracker),
            s.box_threshold,
            s.text_threshold,
            s.max_coverage,
            **dev,
        ),  # fmt: skip
        vlm_stages.CinematicCaption(**vlm, min_side=cfg.stylization.min_side),
        global_track.ImageToVideo(
            inj.get("i2v", m.i2v),
            cfg.stylization.frames,
            cfg.stylization.fps,
            cfg.stylization.max_area,
            seed=s.seed,
            **dev,
        ),
        vlm_stages.StyleCaption(**vlm),
        global_track.Depth(inj.get("depth", m.depth), m.depth_backend, **dev),
        synthesis.VACESynthesis(
            inj.get("vace", m.vace),
            s.steps,
            s.guidance,
            s.flow_shift,
            s.erode_px,
            s.dilate_px,
            s.seed,
            m.vace_lora,
            **dev,
        ),  # fmt: skip
        vlm_stages.DiscriminateTask(**vlm),
        synthesis.Finish(),
    ]
    if q.filter:
        stages.append(vlm_stages.QualityFilter(**vlm))
    if q.verify:
        stages.append(vlm_stages.Verify(**vlm))
    stages.append(pack.Pack())  # encoding in the workers: the driver only appends bytes to shards
    unknown = (set(cfg.execution.stage_workers) | set(cfg.execution.stage_batch_sizes)) - {
        st.name for st in stages
    }
    if unknown:
        raise FreePropInputError(
            f"execution.stage_workers / stage_batch_sizes: unknown stage(s) {sorted(unknown)}"
        )
    for stage in stages:
        stage.stage_dir = m.stage_dir
        stage.workers = int(cfg.execution.stage_workers.get(stage.name, stage.workers))
        stage.batch_size = int(cfg.execution.stage_batch_sizes.get(stage.name, stage.batch_size))
    return stages


# --- dedup and writing -------------------------------------------------------------------------------


class DedupIndex:
    """Near-duplicate lookup over the pairs already written, kept in an append-only log for resume.

    Duplicates are looked for within a task only (a clip's swap and removal pairs are not copies of
    each other, however small the object). In the local track a pair is a duplicate when its *source
    clip* is near-identical to an earlier one's — every hashed source frame within `bits` (Hamming) —
    which is what the paper's dedup removes; in the global track the style matters too, so source and
    target frames must all match (one content image with several styles is several pairs). Candidates
    come from the first frame's hash cut into `bits + 1` bands: hashes within `bits` of each other agree
    exactly on at least one band (pigeonhole), so a lookup compares a handful of pairs, not all.
    """

    def __init__(self, path: Path, bits: int):
        self.bits, self.hashes, self.bands = bits, {}, {}
        edges = np.linspace(0, 64, bits + 2).astype(int)
        self.spans = [(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:])]
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._index(entry["id"], entry["h"], entry.get("task"), entry.get("track"))
        self.log = path.open("a")

    def _keys(self, task, first: int) -> list[tuple]:
        return [(task, band, (first >> lo) & ((1 << (hi - lo)) - 1)) for band, (lo, hi) in enumerate(self.spans)]

    @staticmethod
    def _compared(hashes: list[int], track: str | None) -> list[int]:
        return hashes if track == "global" else hashes[: len(hashes) // 2]  # local: the source frames

    def _index(self, sample_id: str, hashes: list[int], task=None, track=None) -> None:
        self.hashes[sample_id] = self._compared(hashes, track)
        for key in self._keys(task, hashes[0]):
            self.bands.setdefault(key, set()).add(sample_id)

    def is_duplicate(self, sample_id: str, hashes: list[int], task=None, track=None) -> bool:
        """True if an *other* written pair of the same task is near-identical (see the class docstring)."""
        mine = self._compared(hashes, track)
        candidates = set().union(*(self.bands.get(key, ()) for key in self._keys(task, hashes[0]))) - {sample_id}
        return any(
            len(self.hashes[c]) == len(mine)
            and all(bin(a ^ b).count("1") <= self.bits for a, b in zip(self.hashes[c], mine))
            for c in candidates
        )

    def add(self, sample_id: str, hashes: list[int], task=None, track=None) -> None:
        self._index(sample_id, hashes, task, track)
        self.log.write(json.dumps({"id": sample_id, "h": hashes, "task": task, "track": track}) + "\n")
        self.log.flush()

    def close(self) -> None:
        self.log.close()


@dataclass
class BuildSummary:
    ok: Counter = field(default_factory=Counter)  # (track, task) → pairs written
    failed: Counter = field(default_factory=Counter)  # (stage, reason) → samples
    filtered: Counter = field(default_factory=Counter)  # (stage, reason) → samples
    skipped: int = 0  # already committed by an earlier run

    def as_dict(self) -> dict:
        def flat(c):
            return {" / ".join(k): v for k, v in sorted(c.items())}

        return {"ok": flat(self.ok), "failed": flat(self.failed), "filtered": flat(self.filtered),
                "skipped_done": self.skipped}  # fmt: skip

    def table(self) -> str:
        lines = ["pairs written (track / task):"]
        lines += [f"  {k:32s} {v:6d}" for k, v in self.as_dict()["ok"].items()] or ["  none"]
        for label in ("failed", "filtered"):
            entries = self.as_dict()[label]
            lines.append(f"{label} (stage / reason):")
            lines += [f"  {k[:70]:70s} {v:6d}" for k, v in entries.items()] or ["  none"]
        lines.append(f"already done (skipped): {self.skipped}")
        return "\n".join(lines)


def _check_stage_dir(folder: str | None) -> None:
    """`models.stage_dir` must be a folder this process can write (else every sample would fail on it).
    On a cluster each node checks its own when its first worker stages a model."""
    if not folder:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError as err:
        raise FreePropInputError(f"models.stage_dir: cannot create {folder} ({err.strerror})") from None
    if not writable:
        raise FreePropInputError(f"models.stage_dir: {folder} is not writable")


def _reason(error: str) -> str:
    return error.split(":", 1)[0][:60] if error else "unknown"


def _commit(sample: dict, writer, dedup: DedupIndex, cfg: BuildConfig, summary: BuildSummary) -> None:
    """A sample done with the stages → its encoded pair in a shard (unless a near-duplicate), or a recorded
    failure."""
    if sample["status"] == "pending":  # went through every stage, `pack` included
        try:
            row, hashes = read_packed_record(sample["packed"])  # the row and hashes, never the video bytes
            if cfg.quality.dedup and dedup.is_duplicate(row["sample_id"], hashes, row["task"], row["track"]):
                shutil.rmtree(sample["packed"], ignore_errors=True)
                sample |= {"status": "filtered", "stage": "dedup", "error": "duplicate: near-identical pair"}
            else:
                writer.add_packed(sample["packed"], row)  # shards written by the workers (`pool`)
                dedup.add(row["sample_id"], hashes, row["task"], row["track"])
                summary.ok[(row["track"], row["task"])] += 1
                return
        except Exception as err:  # a broken artefact fails this sample only
            sample |= {"status": "failed", "stage": "write", "error": f"{type(err).__name__}: {err}"}
    counter = summary.failed if sample["status"] == "failed" else summary.filtered
    counter[(sample["stage"], _reason(sample["error"]))] += 1
    writer.add_failure(sample["sample_id"], sample["task"], sample["track"],
                       f"{sample['stage']}: {sample['error']}", sample["split"], sample["status"])  # fmt: skip


def run_build(cfg: BuildConfig, limit: int | None = None, resume: bool = False, injected: dict | None = None,
              progress: bool = True, retry_failed: bool = False) -> BuildSummary:  # fmt: skip
    """Build (or continue) the dataset described by `cfg`; returns the counts of this run.

    A sample that fails *transiently* (a server down, a timeout, out of memory: `is_transient`) is
    run again after the pass, up to `quality.transient_retries` more passes with a doubling backoff,
    and only then recorded as failed (its error starting "transient: "). `resume` revisits such
    failures of earlier runs too; `retry_failed` revisits every failed sample (not the filtered ones).
    """
    import time

    from tqdm.auto import tqdm

    from freeprop.data.executors import make_executor
    from freeprop.data.pairs import PairWriter, has_index
    from freeprop.data.stages.base import TRANSIENT

    output = Path(cfg.output)
    if has_index(output) and not resume:
        raise FreePropInputError(f"{output} already holds a dataset; pass --resume to continue it")
    samples = make_samples(cfg)
    summary = BuildSummary()
    stages = build_stages(cfg, injected)

    ids = {s["sample_id"] for s in samples}

    def revisit(row: dict) -> bool:  # failures of earlier runs to run again
        transient = TRANSIENT in (row["error"] or "")
        return row["status"] == "failed" and row["sample_id"] in ids and (retry_failed or transient)

    executor = make_executor(cfg.execution.executor, cfg.execution.workers, cfg.execution.ray_address,
                             cfg.execution.ray_num_cpus, cfg.execution.chunk_size)  # fmt: skip
    with PairWriter(output, cfg.execution.shard_size, revisit=revisit, pool=executor.shard_pool()) as writer:
        todo = [s for s in samples if s["sample_id"] not in writer.done]
        summary.skipped = len(samples) - len(todo)
        todo = todo[:limit] if limit is not None else todo
        for stage in stages:  # missing models: one clear error before any sample runs
            if any(stage.applies(sample) for sample in todo):
                stage.check()
        _check_stage_dir(cfg.models.stage_dir)
        dedup = DedupIndex(output / "dedup_hashes.jsonl", cfg.quality.dedup_bits)
        bars = [
            tqdm(total=len(todo), desc=f"{stage.name:18s}", position=i, disable=not progress, leave=True)
            for i, stage in enumerate(stages)
        ]
        names, original = [stage.name for stage in stages], {s["sample_id"]: s for s in todo}
        try:
            for attempt in range(1 + max(0, cfg.quality.transient_retries)):
                again = []
                for sample in executor.run(stages, todo):
                    last_try = attempt == cfg.quality.transient_retries
                    if sample["status"] == "failed" and sample["error"].startswith(TRANSIENT) and not last_try:
                        again.append(original[sample["sample_id"]])  # not committed: run it again
                        continue
                    reached = names.index(sample["stage"]) + 1 if sample["status"] != "pending" else len(stages)
                    for bar in bars[:reached]:
                        bar.update(1)
                    _commit(sample, writer, dedup, cfg, summary)
                if not again:
                    break
                time.sleep(cfg.quality.transient_backoff * 2**attempt)
                todo = again
        finally:
            for bar in bars:
                bar.close()
            dedup.close()
    with atomic_path(output / "build_summary.json") as tmp:
        tmp.write_text(json.dumps(summary.as_dict(), indent=1))
    return summary
