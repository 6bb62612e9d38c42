"""The same stages through the local executor and Ray Data (a local Ray, 2 logical CPUs... started once)."""

import pytest

from freeprop.data.executors import LocalExecutor, RayExecutor
from freeprop.data.stages.base import Resources, SampleFiltered, Stage, new_sample, run_stage


class Double(Stage):
    name = "double"
    provides = ("caption",)
    resources = Resources(cpus=1)

    def setup(self):
        self.factor = 2  # "model" loaded in the worker

    def process(self, sample):
        n = int(sample["source"])
        if n == 3:
            raise ValueError("three is broken")
        return sample | {"caption": str(n * self.factor)}


class DropOdd(Stage):
    name = "drop_odd"
    requires = ("caption",)

    def process(self, sample):
        if int(sample["source"]) % 2:
            raise SampleFiltered("odd")
        return sample | {"instruction": "even"}


def samples(n=6):
    return [new_sample(sample_id=str(i), track="local", task="swap", source=str(i)) for i in range(n)]


def check(results):
    by_id = {r["sample_id"]: r for r in results}
    assert len(by_id) == 6
    assert (
        by_id["0"]["caption"] == "0"
        and by_id["4"]["instruction"] == "even"
        and by_id["4"]["status"] == "pending"
    )
    assert (
        by_id["3"]["status"] == "failed"
        and by_id["3"]["stage"] == "double"
        and "three is broken" in by_id["3"]["error"]
    )
    assert by_id["5"]["status"] == "filtered" and by_id["5"]["stage"] == "drop_odd"


def test_run_stage_contract():
    sample = samples(1)[0]
    assert run_stage(DropOdd(), sample)["error"] == "missing inputs ['caption']"
    done = sample | {"status": "failed"}
    assert run_stage(Double(), done) is done  # finished samples pass through untouched
    assert run_stage(type("G", (Double,), {"tracks": ("global",)})(), sample) is sample  # other track


@pytest.mark.parametrize("workers", [1, 3])
def test_local_executor(workers):
    check(list(LocalExecutor(workers).run([Double(), DropOdd()], samples())))


@pytest.fixture(scope="session")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()


def test_ray_executor_runs_the_same_stages(local_ray):
    stages = [Double(), DropOdd()]
    stages[0].workers = 2  # an actor pool of two for this stage
    check(list(RayExecutor().run(stages, samples())))


class Model:
    """A stand-in for a loaded pipeline: not re-entrant (two threads inside it at once corrupt it)."""

    loads: list[str] = []

    def __init__(self, spec):
        self.spec, self.inside = spec, 0
        Model.loads.append(spec)

    def __call__(self, value):
        import time

        self.inside += 1
        try:
            if self.inside > 1:
                raise IndexError("two threads inside one pipeline")
            time.sleep(0.005)
            return value
        finally:
            self.inside -= 1


class ModelStage(Stage):
    """Runs its model on each sample and records which models were loaded while it ran."""

    models = {"pipe": "family"}
    seen: list[tuple[str, list]] = []

    def __init__(self, name, spec, tracks=("local", "global")):
        self.name, self.pipe, self.tracks = name, spec, tracks

    def load(self, attr, spec):
        return Model(spec)

    def process(self, sample):
        from freeprop.data.stages.base import loaded_models

        ModelStage.seen.append((self.name, sorted(key[1] for key in loaded_models())))
        return sample | {"caption": sample["caption"] + self.model("pipe")(self.name[0])}


def mixed_samples(n=8):
    return [new_sample(sample_id=str(i), track=("local", "global")[i % 2], task="swap", source=str(i))
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize("chunk", [0, 3])
def test_threads_never_enter_one_pipeline_at_once(chunk):
    stages = [ModelStage("vace", "vace-14b"), ModelStage("qa", "qwen")]
    out = list(LocalExecutor(workers=4, chunk=chunk).run(stages, mixed_samples()))
    assert [s["status"] for s in out] == ["pending"] * 8 and {s["caption"] for s in out} == {"vq"}


def test_one_model_family_resident_at_a_time_and_shared_models_load_once_per_chunk():
    """The shipped build on one GPU: Wan-I2V (global track) and VACE (both tracks) are never loaded
    together; two stages naming the same VLM share one copy."""
    ModelStage.seen, Model.loads = [], []
    stages = [ModelStage("vlm-a", "qwen"), ModelStage("i2v", "wan-i2v-14b", tracks=("global",)),
              ModelStage("vace", "vace-14b"), ModelStage("vlm-b", "qwen")]  # fmt: skip
    out = list(LocalExecutor(workers=2, chunk=4).run(stages, mixed_samples(8)))
    assert all(s["status"] == "pending" and s["caption"] == ("vivv" if s["track"] == "global" else "vvv")
               for s in out)  # fmt: skip
    assert all(not {"wan-i2v-14b", "vace-14b"} <= set(loaded) for _, loaded in ModelStage.seen)
    assert Model.loads.count("qwen") == 2 and Model.loads.count("vace-14b") == 2  # once per chunk of 4
    from freeprop.data.stages.base import loaded_models

    assert loaded_models() == []  # all released at the end
    Model.loads = []
    list(LocalExecutor(chunk=0).run(stages, mixed_samples(8)))  # chunk 0: everything stays loaded
    assert sorted(Model.loads) == ["qwen", "vace-14b", "wan-i2v-14b"]


def test_transient_failures_are_told_from_bad_samples():
    import urllib.error

    from freeprop.data.stages.base import is_transient

    class OutOfMemoryError(RuntimeError):  # torch.cuda.OutOfMemoryError, by name
        pass

    def http(code):
        return urllib.error.HTTPError("http://x", code, "", {}, None)

    for err in (ConnectionRefusedError(), TimeoutError(), urllib.error.URLError("down"), http(503), http(429),
                OutOfMemoryError("CUDA out of memory"), MemoryError()):  # fmt: skip
        assert is_transient(err), err
    for err in (ValueError("bad video"), http(404), KeyError("object"), RuntimeError("shape mismatch")):
        assert not is_transient(err), err

    class Flaky(Double):
        def process(self, sample):
            raise TimeoutError("the server did not answer")

    out = run_stage(Flaky(), samples(1)[0])
    assert out["status"] == "failed" and out["error"].startswith("transient: TimeoutError")


class NeverWanted(Double):
    """A global-track stage whose model must not load when no global sample exists."""

    name = "never"
    tracks = ("global",)

    def setup(self):
        raise AssertionError("a pool was made for a stage without work")


def test_ray_makes_no_pool_for_a_stage_without_work_and_vlm_gpus_follow_where_it_runs(local_ray):
    check(list(RayExecutor().run([Double(), NeverWanted(), DropOdd()], samples())))  # all local samples
    from freeprop.data.stages.vlm_stages import IdentifyObject

    assert IdentifyObject(vlm="qwen:Qwen/Qwen2.5-VL-7B-Instruct").resources.gpus == 1  # loaded in the worker
    assert IdentifyObject(vlm="openai:http://vllm:8000/v1#Qwen2.5-VL-72B").resources.gpus == 0  # served


def test_a_ray_actor_sends_a_batch_of_requests_to_a_served_vlm_at_once():
    """A VLM stage on an OpenAI-compatible server is thread-safe: an actor's batch of samples is in
    flight together (batched inference on the server's side), one loaded in-process is not."""
    import threading
    import time

    import pandas as pd

    from freeprop.data.executors import _StageActor
    from freeprop.data.stages.vlm_stages import IdentifyObject

    inside, most, lock = [0], [0], threading.Lock()

    class Server:
        def chat(self, images, prompt, text_first=False):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1
            return '{"Object": "ball"}'

    assert IdentifyObject(vlm="openai:http://vllm:8000/v1#m").thread_safe
    assert not IdentifyObject(vlm="qwen:Qwen/Qwen2.5-VL-7B-Instruct").thread_safe
    stage = IdentifyObject(vlm="openai:http://vllm:8000/v1#m")
    stage.model = lambda attr: Server()  # the served model, without a server
    stage.process = lambda sample: sample | {"object": stage.model("vlm").chat([], "x")}
    actor = _StageActor.__new__(_StageActor)
    actor.stage = stage
    out = actor(pd.DataFrame([s | {"source_video": "v.mp4"} for s in samples(4)]))
    assert list(out["object"]) == ['{"Object": "ball"}'] * 4 and most[0] == 4


def packed_pairs(folder, count: int) -> list[tuple[str, dict]]:
    """`count` pairs encoded and packed as a build's `pack` stage leaves them."""
    from freeprop.data.pairs import Pair, encode_pair, save_packed
    from tests.conftest import moving_pattern

    items = []
    for i in range(count):
        source = moving_pattern(frames=3, height=16, width=16, speed=i + 1)
        members, row = encode_pair(Pair(f"p{i}", source, 255 - source, "stylization", "global"))
        save_packed(folder / f"packed-{i}", members, row, [0])
        items.append((str(folder / f"packed-{i}"), row))
    return items


def test_ray_workers_write_the_shards_and_the_driver_only_the_index(local_ray, tmp_path, monkeypatch):
    """Under Ray the shards are written by tasks on the cluster: the driver never handles a video byte
    (writing a member here would raise), and the index and shards hold every pair once."""
    import freeprop.data.pairs as pairs
    from freeprop.data.pairs import PairDataset, PairWriter

    items = packed_pairs(tmp_path, 5)
    monkeypatch.setattr(pairs, "_add_member", lambda *a: (_ for _ in ()).throw(AssertionError("driver wrote")))
    with PairWriter(tmp_path / "out", shard_size=2, pool=RayExecutor().shard_pool()) as writer:
        for folder, row in items:
            writer.add_packed(folder, row)
    monkeypatch.undo()
    data = PairDataset(tmp_path / "out")
    assert sorted(r["sample_id"] for r in data.rows) == [f"p{i}" for i in range(5)]
    assert sorted({r["shard"] for r in data.rows}) == [f"shard-{i:06d}.tar" for i in range(3)]
    assert all(data[i].source.shape == (3, 16, 16, 3) for i in range(5))
    assert not list(tmp_path.glob("packed-*"))  # removed once in a shard


class KillsItsWorker(Stage):
    name = "kills_its_worker"
    resources = Resources(cpus=1)

    def process(self, sample):
        if sample["source"] == "3":
            import os

            os._exit(1)  # a crash no `except` can catch (a segfault, the OOM killer)
        return sample


def test_a_sample_that_kills_its_ray_worker_stops_the_run_after_the_retries_with_one_line(local_ray):
    from freeprop.data.executors import CRASH_RETRIES, WorkerCrashed

    with pytest.raises(WorkerCrashed, match=f"killed its Ray worker process {CRASH_RETRIES + 1} times"):
        list(RayExecutor().run([KillsItsWorker()], samples()))
