"""Executors: run the same stage code locally or on Ray Data.

- `LocalExecutor` (default): each sample goes through every stage in turn; `workers > 1` runs that
  many samples at once on threads (model calls release the GIL). Models load once per stage.
- `RayExecutor` (extra `ray`): one `map_batches` per stage, each with its own actor pool
  (`concurrency = stage.workers`), `num_cpus` / `num_gpus` per actor and the stage's batch size, so
  a cluster scales every stage on its own (Cosmos-Curate / NeMo Curator style). Exceptions are
  caught per sample inside the actor, so a bad video never fails a block.

Both yield finished samples as they complete; the driver commits them (see `data/build.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from freeprop.data.stages.base import Stage, run_stage


class LocalExecutor:
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, stages: Sequence[Stage], samples: Iterable[dict]) -> Iterator[dict]:
        ready: set[int] = set()

        def through(sample: dict) -> dict:
            for i, stage in enumerate(stages):
                if sample["status"] != "pending":
                    break
                if i not in ready and stage.applies(sample):
                    stage.setup()
                    ready.add(i)
                sample = run_stage(stage, sample)
            return sample

        if self.workers == 1:
            for sample in samples:
                yield through(sample)
            return
        # Set up every stage first (not thread-safe to load models concurrently), then fan out.
        for i, stage in enumerate(stages):
            stage.setup()
            ready.add(i)
        with ThreadPoolExecutor(self.workers) as pool:
            yield from pool.map(through, samples)


class _StageActor:
    """A Ray actor running one stage (model loaded once in the constructor)."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.setup()

    def __call__(self, batch):
        rows = batch.to_dict("records")
        import pandas as pd

        return pd.DataFrame([run_stage(self.stage, {k: str(v) for k, v in row.items()}) for row in rows])


class RayExecutor:
    """Ray Data: one actor pool per stage; `address=None` starts (or joins) a local Ray."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, batch_rows: int = 1):
        self.address, self.num_cpus, self.batch_rows = address, num_cpus, batch_rows

    def run(self, stages: Sequence[Stage], samples: Iterable[dict]) -> Iterator[dict]:
        try:
            import ray
        except ImportError:
            from freeprop.errors import FreePropInputError

            raise FreePropInputError("--executor ray needs Ray Data: pip install 'freeprop[ray]'") from None
        if not ray.is_initialized():
            ray.init(
                address=self.address, num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False
            )
        samples = list(samples)
        if not samples:
            return
        ds = ray.data.from_items(samples, override_num_blocks=max(1, len(samples) // max(1, self.batch_rows)))
        for stage in stages:
            ds = ds.map_batches(
                _StageActor,
                fn_constructor_kwargs={"stage": stage},
                batch_size=stage.batch_size,
                batch_format="pandas",
                concurrency=stage.workers,
                num_cpus=stage.resources.cpus,
                num_gpus=stage.resources.gpus or None,
            )
        for row in ds.iter_rows():
            yield {k: str(v) for k, v in row.items()}


def make_executor(kind: str, workers: int = 1, address: str | None = None, num_cpus: int | None = None):
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, num_cpus)
    from freeprop.errors import FreePropInputError

    raise FreePropInputError(f"--executor {kind!r}: use local or ray")
