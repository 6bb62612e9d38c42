"""The stage contract of the FFP-300K construction pipeline (after NeMo Curator / Cosmos-Curate).

A *sample* is a flat `dict[str, str]` — every field a string ("" = not set yet; structured values
as JSON) — so the same rows travel unchanged through the local executor, Ray Data blocks (pandas /
Arrow) and the resume logic. Media live as files in the sample's work folder, written atomically;
fields hold their paths.

A `Stage` declares what it reads (`requires`) and writes (`provides`), which samples it applies to
(`tracks`, `tasks`), the resources one worker needs (`cpus`, `gpus`, fractional allowed) and its
batch size; `setup()` loads models inside the worker (never in `__init__`, so stages pickle cheaply
to Ray actors), `process(sample)` returns the updated sample. Failures never stop a job:
`run_stage` turns an exception into status "failed" with the stage and reason, `SampleFiltered` into
status "filtered"; samples that are not "pending" pass through untouched.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freeprop.video import atomic_path

FIELDS = (
    # identity and bookkeeping
    "sample_id", "source_id", "track", "task", "split", "status", "stage", "error", "work",
    # inputs
    "source", "caption_in", "content_image", "style_image",
    # local track
    "frame_indices", "fps", "source_video", "object", "caption", "removal_caption", "box", "masks",
    "vace_mask", "edited_video", "final_task",
    # global track
    "cinematic_caption", "style_caption", "depth_video",
    # quality control
    "quality", "verified", "instruction",
    # the encoded pair (the `pack` stage's folder)
    "packed",
)  # fmt: skip


def new_sample(**fields: str) -> dict[str, str]:
    """A pending sample with every field present ("" where not given)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown sample fields: {sorted(unknown)}")
    return {name: "" for name in FIELDS} | {"status": "pending"} | {k: str(v) for k, v in fields.items()}


def stable_id(*parts: str, length: int = 16) -> str:
    """Deterministic id from its parts (same inputs and config → same id → resumable)."""
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:length]


class SampleFiltered(Exception):
    """The sample is fine but rejected by a quality rule (recorded as status "filtered")."""


class StageError(Exception):
    """The stage could not produce its output for this sample (recorded as status "failed")."""


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0


# Models loaded in this process, by (kind, path, options, device, dtype): stages naming the same model
# share one copy (the seven VLM stages, one Qwen2.5-VL), and the local executor drops those no later
# stage needs (`release_models`), so one GPU never holds the VACE and Wan-I2V 14B families at once.
_LOADED: dict[tuple, object] = {}
_LOAD_LOCK = threading.Lock()


def release_models(keep: set[tuple] = frozenset()) -> list[tuple]:
    """Drop every loaded model whose key is not in `keep` (and free the GPU's cache); returns the keys dropped."""
    with _LOAD_LOCK:
        dropped = [key for key in _LOADED if key not in keep]
        for key in dropped:
            del _LOADED[key]
    if dropped:
        import gc

        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
    return dropped


def loaded_models() -> list[tuple]:
    return list(_LOADED)


class Stage:
    name: str = "stage"
    requires: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    tracks: tuple[str, ...] = ("local", "global")
    tasks: tuple[str, ...] | None = None  # None = every task of those tracks
    resources: Resources = Resources()
    batch_size: int = 1
    workers: int = 1  # actors per stage under Ray (the local executor runs samples through in turn)
    models: dict[str, str] = {}  # attribute holding a model's path or id (or the model itself) → its kind
    thread_safe: bool = False  # may two threads run `process` at once? (a loaded pipeline may not)
    stage_dir: str | None = None  # node-local folder models are copied to before loading (`models.stage_dir`)

    def setup(self) -> None:
        """Load models; called once per worker before the first `process` (they load on first use too)."""
        for attr in self.models:
            self.model(attr)

    def load(self, attr: str, spec: str):
        """Load the model `attr` names from `spec` (a path or id); stages with models override this."""
        raise NotImplementedError(f"{type(self).__name__} cannot load {attr}")

    def model_options(self, attr: str) -> tuple:
        """Whatever besides the path changes what `load` returns (e.g. a LoRA): part of the model's key."""
        return ()

    def model_key(self, attr: str) -> tuple | None:
        """The key of the model `attr` names in this process's registry, None for an object given as is."""
        spec = getattr(self, attr)
        if not isinstance(spec, str):
            return None
        return (self.models[attr], spec, self.model_options(attr), getattr(self, "device", None), getattr(self, "dtype", None))

    def model(self, attr: str):
        """The model `attr` names: an object given to the stage as is, else the one loaded from the path or
        id it holds — once per process, shared by every stage naming the same model, until released."""
        key = self.model_key(attr)
        if key is None:
            return getattr(self, attr)
        from freeprop.hub import staging

        with _LOAD_LOCK:
            if key not in _LOADED:
                with staging(self.stage_dir):  # one copy per node, whatever the number of workers
                    _LOADED[key] = self.load(attr, getattr(self, attr))
            return _LOADED[key]

    def model_keys(self) -> set[tuple]:
        return {key for attr in self.models if (key := self.model_key(attr)) is not None}

    def check(self) -> None:
        """Fail fast (before any sample runs) if a model this stage would load is not available."""

    def applies(self, sample: dict[str, str]) -> bool:
        return sample["track"] in self.tracks and (self.tasks is None or sample["task"] in self.tasks)

    def process(self, sample: dict[str, str]) -> dict[str, str]:
        raise NotImplementedError

    # --- helpers for stages ---
    def torch_dtype(self, default=None):
        """The stage's `dtype` name ("bfloat16", …) as a torch dtype, or `default` when unset."""
        import torch

        name = getattr(self, "dtype", None)
        return getattr(torch, name) if name else default

    @staticmethod
    def work_dir(sample: dict[str, str]) -> Path:
        folder = Path(sample["work"])
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @staticmethod
    def input_key(*parts) -> str:
        """A short hash of everything that determines a cached result (text, numbers, arrays), so a
        cache is reused only for the same inputs and model — not merely the same sample folder."""
        import hashlib

        digest = hashlib.sha1()
        for part in parts:
            data = np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode()
            digest.update(len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()[:16]

    @staticmethod
    def cached_json(path: Path, compute) -> dict:
        """`compute()` once; its JSON result is kept at `path` (atomic) and reused on resume."""
        if path.is_file():
            return json.loads(path.read_text())
        value = compute()
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(value))
        return value


TRANSIENT = "transient: "  # the error prefix of a failure worth retrying (the sample itself may be fine)


def is_transient(err: BaseException) -> bool:
    """A failure of the machine or a service rather than of the sample: a server down or timing out,
    a dropped connection, out of (GPU) memory. Retried; a bad sample's error is recorded for good."""
    import http.client
    import urllib.error

    if isinstance(err, urllib.error.HTTPError):
        return err.code in (408, 429) or err.code >= 500  # timeouts, rate limits, server errors
    transient = (ConnectionError, TimeoutError, urllib.error.URLError, http.client.HTTPException, MemoryError)
    return isinstance(err, transient) or type(err).__name__ == "OutOfMemoryError"  # torch's (CUDA) OOM


def run_stage(stage: Stage, sample: dict[str, str]) -> dict[str, str]:
    """One stage on one sample, never raising: failures and filter decisions are recorded."""
    if sample["status"] != "pending" or not stage.applies(sample):
        return sample
    missing = [f for f in stage.requires if not sample.get(f)]
    if missing:
        return sample | {"status": "failed", "stage": stage.name, "error": f"missing inputs {missing}"}
    try:
        out = stage.process(dict(sample))
    except SampleFiltered as reason:
        return sample | {"status": "filtered", "stage": stage.name, "error": str(reason)}
    except Exception as err:  # one bad sample must never stop the job
        return sample | {
            "status": "failed",
            "stage": stage.name,
            "error": (TRANSIENT if is_transient(err) else "") + f"{type(err).__name__}: {err}"[:500],
        }
    return {k: "" if v is None else str(v) for k, v in out.items()}
