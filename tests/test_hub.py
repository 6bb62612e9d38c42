"""Per-node model staging (`hub.staged`, `models.stage_dir`): one copy per node whatever the number of
workers loading at once, loads read the copy, changed weights are staged anew."""

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from freeprop import hub
from freeprop.data.stages.base import new_sample, release_models, run_stage
from freeprop.data.stages.global_track import Depth
from freeprop.data.stages.media import load_video, save_video
from tests.conftest import moving_pattern
from tests.data import tiny_models


def _stage_slowly(path: str, folder: str, log: str, out: multiprocessing.Queue) -> None:
    copy = hub._copy

    def logged(source, partial):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # a copy long enough for the other workers to arrive while it runs
        copy(source, partial)

    hub._copy = logged
    out.put(hub.staged(path, folder))


def test_four_workers_on_one_node_make_one_copy_and_all_load_it(tmp_path):
    model = tmp_path / "shared" / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"a": 1}')
    (model / "weights.safetensors").write_bytes(os.urandom(1 << 16))
    fork = multiprocessing.get_context("fork")
    out = fork.Queue()
    workers = [fork.Process(target=_stage_slowly, args=(str(model), str(tmp_path / "node"), str(tmp_path / "log"), out))
               for _ in range(4)]  # fmt: skip
    for w in workers:
        w.start()
    paths = {out.get(timeout=60) for _ in workers}
    for w in workers:
        w.join(60)
    assert len((tmp_path / "log").read_text().split()) == 1  # one worker copied, three waited
    (staged,) = paths
    assert Path(staged).parent == tmp_path / "node" and Path(staged).name.startswith("model-")
    assert (Path(staged) / "weights.safetensors").read_bytes() == (model / "weights.safetensors").read_bytes()
    assert not list((tmp_path / "node").glob(".*.partial"))

    assert hub.staged(str(model), tmp_path / "node") == staged  # already there: no copy
    (model / "weights.safetensors").write_bytes(os.urandom(1 << 16))  # new weights at the same path
    restaged = hub.staged(str(model), tmp_path / "node")
    assert restaged != staged
    assert (Path(restaged) / "weights.safetensors").read_bytes() == (model / "weights.safetensors").read_bytes()
    assert hub.staged("org/not-cached", tmp_path / "node") == "org/not-cached"  # left to from_pretrained


def test_a_stage_loads_its_model_from_the_node_local_copy(tmp_path, monkeypatch):
    model, processor = tiny_models.depth_anything()
    model.save_pretrained(tmp_path / "depth")
    processor.save_pretrained(tmp_path / "depth")
    loaded_from, check = [], hub.refuse_custom_code
    monkeypatch.setattr(hub, "refuse_custom_code", lambda path, sub=None: (loaded_from.append(path), check(path, sub)))
    source = tmp_path / "s.mp4"
    save_video(source, moving_pattern(4, 32, 40), 16)
    stage = Depth(str(tmp_path / "depth"), device="cpu")
    stage.stage_dir = str(tmp_path / "node")
    try:
        out = run_stage(stage, new_sample(sample_id="g", track="global", task="stylization", source_video=str(source),
                                          fps="16", work=str(tmp_path / "w")))  # fmt: skip
    finally:
        release_models()
    assert out["status"] == "pending", out["error"]
    (copy,) = (tmp_path / "node").glob("depth-*")
    assert loaded_from == [str(copy), str(copy)]  # the model and its processor, both from the copy
    assert np.isfinite(load_video(out["depth_video"])).all()
