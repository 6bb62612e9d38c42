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
