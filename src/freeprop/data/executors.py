"""Executors: run the same stage code locally or on Ray Data.

- `LocalExecutor` (default): chunks of samples go through the stages stage by stage, releasing the
  models no later stage needs (one 14B family on the GPU at a time); `workers > 1` runs that many
  samples at once on threads (model calls release the GIL), one at a time inside a stage whose
  pipeline is not thread-safe.
- `RayExecutor` (extra `ray`): one `map_batches` per stage, each with its own actor pool
  (`concurrency = stage.workers`), `num_cpus` / `num_gpus` per actor and the stage's batch size, so
  a cluster scales every stage on its own (Cosmos-Curate / NeMo Curator style). Exceptions are
  caught per sample inside the actor, so a bad video never fails a block.

Both yield finished samples as they complete; the driver commits them (see `data/build.py`): it reads
each sample's index row and hashes, and the shards are written from the packed folders by
`shard_pool()` — Ray tasks on the cluster, or the driver itself on one machine.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from freeprop.data.stages.base import Stage, release_models, run_stage


def _batched(items: Iterable, size: int) -> Iterator[list]:
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


class LocalExecutor:
    """One machine. `chunk` samples at a time go through the stages stage by stage, and after each stage
    the models no later stage of the chunk needs are released — so one GPU holds one 14B family at a
    time (VACE, then Wan-I2V), and models shared by several stages (the VLM) load once per chunk.
    `chunk=0` streams each sample through every stage instead, keeping every model resident (fastest
    when they all fit). `workers` threads run samples at once; a stage that is not `thread_safe` (a
    loaded pipeline is not re-entrant) runs one sample at a time under its own lock."""

    def __init__(self, workers: int = 1, chunk: int = 32):
        self.workers, self.chunk = max(1, workers), max(0, chunk)

    def shard_pool(self):
        """Who writes the shards (`PairWriter(pool=…)`): on one machine, the driver itself."""
        return None

    def run(self, stages: Sequence[Stage], samples: Iterable[dict]) -> Iterator[dict]:
        locks = {i: threading.Lock() for i, stage in enumerate(stages) if not stage.thread_safe}
        ready, setting_up = set(), threading.Lock()

        def one(i: int, sample: dict) -> dict:
            if sample["status"] != "pending" or not stages[i].applies(sample):
                return sample
            with setting_up:
                if i not in ready:  # once per run; released models reload on their next use
                    stages[i].setup()
                    ready.add(i)
            with locks.get(i, contextlib.nullcontext()):
                return run_stage(stages[i], sample)

        with ThreadPoolExecutor(self.workers) as pool:
            if not self.chunk:
                def through(sample: dict) -> dict:
                    for i in range(len(stages)):
                        sample = one(i, sample)
                    return sample

                yield from (pool.map(through, samples) if self.workers > 1 else map(through, samples))
                release_models()
                return
            for chunk in _batched(samples, self.chunk):
                for i in range(len(stages)):
                    chunk = list(pool.map(lambda s, i=i: one(i, s), chunk))
                    needed = set().union(*(later.model_keys() for later in stages[i + 1 :]
                                           if any(s["status"] == "pending" and later.applies(s) for s in chunk)))  # fmt: skip
                    release_models(keep=needed)
                yield from chunk
            release_models()


CRASH_RETRIES = 2  # Ray: restarts of a stage's actor, and retries of its batch, after a worker dies


class WorkerCrashed(RuntimeError):
    """A sample kept killing the worker process running it: the build stops (one line, exit 1)."""


def limit_threads(cpus: int) -> None:
    """Keep this process to `cpus` threads of work: codecs, OpenCV and torch would otherwise each start
    a thread per core of the node (a 1-CPU Ray actor must not)."""
    import cv2
    import torch

    from freeprop.video import set_codec_threads

    set_codec_threads(cpus)
    cv2.setNumThreads(cpus)
    torch.set_num_threads(cpus)


class _StageActor:
    """A Ray actor running one stage (model loaded once in the constructor)."""

    def __init__(self, stage: Stage):
        limit_threads(max(1, int(stage.resources.cpus)))  # the CPUs this actor was given, no more
        self.stage = stage
        stage.setup()

    def __call__(self, batch):
        import pandas as pd

        rows = [{k: str(v) for k, v in row.items()} for row in batch.to_dict("records")]
        if self.stage.thread_safe and len(rows) > 1:  # e.g. a served VLM: the batch's requests in flight at once
            with ThreadPoolExecutor(len(rows)) as pool:
                return pd.DataFrame(list(pool.map(lambda row: run_stage(self.stage, row), rows)))
        return pd.DataFrame([run_stage(self.stage, row) for row in rows])


class RayExecutor:
    """Ray Data: one actor pool per stage; `address=None` starts (or joins) a local Ray."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, batch_rows: int = 1,
                 autoscale: bool = True):  # fmt: skip
        """`autoscale`: each stage's pool grows from 1 to `stage.workers` actors as work queues up
        (else it starts at `stage.workers`)."""
        self.address, self.num_cpus, self.batch_rows, self.autoscale = address, num_cpus, batch_rows, autoscale

    def _ray(self):
        try:
            import ray
        except ImportError:
            from freeprop.errors import FreePropInputError

            raise FreePropInputError("--executor ray needs Ray Data: pip install 'freeprop[ray]'") from None
        if not ray.is_initialized():
            ray.init(
                address=self.address, num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False
            )
        return ray

    def shard_pool(self):
        """Shards are written by Ray tasks on the cluster (the driver handles no video bytes)."""
        return _RayPool(self._ray())

    def run(self, stages: Sequence[Stage], samples: Iterable[dict]) -> Iterator[dict]:
        ray = self._ray()
        samples = list(samples)
        if not samples:
            return
        ds = ray.data.from_items(samples, override_num_blocks=max(1, len(samples) // max(1, self.batch_rows)))
        for stage in stages:
            if not any(stage.applies(sample) for sample in samples):
                continue  # no pool, no model load, for a stage without work (e.g. a track with no samples)
            resources = stage.resources
            ds = ds.map_batches(
                _StageActor,
                fn_constructor_kwargs={"stage": stage},
                batch_size=stage.batch_size,
                batch_format="pandas",
                concurrency=(1, stage.workers) if self.autoscale and stage.workers > 1 else stage.workers,
                num_cpus=resources.cpus,
                num_gpus=resources.gpus or None,
                max_restarts=CRASH_RETRIES,  # a sample that kills its worker is not retried forever
                max_task_retries=CRASH_RETRIES,
            )
        left = {sample["sample_id"] for sample in samples}
        try:
            for row in ds.iter_rows():
                left.discard(row["sample_id"])
                yield {k: str(v) for k, v in row.items()}
        except ray.exceptions.RayActorError as err:  # a worker process died CRASH_RETRIES + 1 times
            raise WorkerCrashed(
                f"a sample killed its Ray worker process {CRASH_RETRIES + 1} times (a crash in native code or "
                f"the OOM killer; Ray: {type(err).__name__}); {len(left)} samples had not finished — the "
                "pairs committed so far are kept, and --resume runs the rest again"
            ) from None


class _RayPool:
    """`submit(fn, *args)` as a Ray task (a quarter CPU: shard writing is I/O), with a `concurrent.futures`
    future — the interface `PairWriter(pool=…)` uses."""

    def __init__(self, ray):
        self.ray, self.remote = ray, {}

    def submit(self, fn, *args):
        if fn not in self.remote:
            self.remote[fn] = self.ray.remote(num_cpus=0.25, max_retries=CRASH_RETRIES)(fn)
        return self.remote[fn].remote(*args).future()


def make_executor(kind: str, workers: int = 1, address: str | None = None, num_cpus: int | None = None,
                  chunk: int = 32):
    if kind == "local":
        return LocalExecutor(workers, chunk)
    if kind == "ray":
        return RayExecutor(address, num_cpus)
    from freeprop.errors import FreePropInputError

    raise FreePropInputError(f"--executor {kind!r}: use local or ray")
