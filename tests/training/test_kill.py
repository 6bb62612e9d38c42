"""`freeprop train` killed with SIGKILL — between checkpoints, and in the middle of writing one —
then `--resume`d: the final weights equal an uninterrupted run's, bit for bit (issue 16, item 13)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.training.test_recipe import pairs, tiny_args  # noqa: F401 (pairs is a fixture)

# The CLI in a child process; FREEPROP_TEST_SLOW_CHECKPOINT makes each checkpoint write pause half-way
# (after the weights, before the optimizer state) so the kill lands inside it.
CHILD = """
import os, sys, time
import freeprop.training.recipe as recipe
if os.environ.get("FREEPROP_TEST_SLOW_CHECKPOINT"):
    real = recipe.write_safetensors
    def slow(state, path):
        real(state, path)
        if "partial" in str(path):
            time.sleep(5)
    recipe.write_safetensors = slow
from freeprop.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run(args, **env):
    return subprocess.Popen([sys.executable, "-c", CHILD, "train", "configs/tiny.yaml", *args],
                            env=os.environ | env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def wait_for(condition, process, seconds=120):
    deadline = time.time() + seconds
    while not condition():
        if process.poll() is not None or time.time() > deadline:
            raise AssertionError(f"never reached the kill point: {process.stderr.read().decode()[-800:]}")
        time.sleep(0.02)


@pytest.mark.parametrize("where", ["mid-step", "mid-checkpoint"])
def test_sigkill_then_resume_is_bit_exact(pairs, tmp_path, where):  # noqa: F811
    extra = ("max_steps=6", "save_every=2")
    straight = run(tiny_args(pairs, tmp_path / "a", *extra))
    assert straight.wait(300) == 0, straight.stderr.read().decode()[-800:]

    out = tmp_path / "b"
    if where == "mid-step":  # after step 3 is logged: checkpoint 2 is the last one
        child = run(tiny_args(pairs, out, *extra))
        metrics = out / "metrics.jsonl"
        wait_for(lambda: metrics.is_file() and '"step": 3' in metrics.read_text(), child)
    else:  # inside the writing of checkpoint 4 (its weights written, the rest not yet)
        child = run(tiny_args(pairs, out, *extra), FREEPROP_TEST_SLOW_CHECKPOINT="1")
        partial = out / "checkpoints" / ".step-0000004.partial" / "trainable.safetensors"
        wait_for(partial.is_file, child)
    child.send_signal(signal.SIGKILL)
    child.wait(60)
    assert (out / "checkpoints" / "latest").read_text() == "step-0000002"

    resumed = run([*tiny_args(pairs, out, *extra), "--resume"])
    assert resumed.wait(300) == 0, resumed.stderr.read().decode()[-800:]
    a = load_file(tmp_path / "a" / "checkpoints" / "step-0000006" / "trainable.safetensors")
    b = load_file(out / "checkpoints" / "step-0000006" / "trainable.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((out / "checkpoints").glob(".*.partial"))  # the torn checkpoint was cleared


def test_sigterm_to_the_whole_process_group_with_data_workers_saves_then_resumes(pairs, tmp_path):  # noqa: F811
    """`timeout` and Ctrl-C signal the whole process group, data workers included: the run must still
    stop at a step boundary, save, write its adapter and exit 130 (interrupted) — not die of a killed worker."""
    out, extra = tmp_path / "run", ("max_steps=400", "save_every=1000", "data.num_workers=2")
    child = subprocess.Popen([sys.executable, "-c", CHILD, "train", "configs/tiny.yaml", *tiny_args(pairs, out, *extra)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    metrics = out / "metrics.jsonl"
    wait_for(lambda: metrics.is_file() and '"step": 2' in metrics.read_text(), child)
    os.killpg(child.pid, signal.SIGTERM)
    assert child.wait(120) == 130, child.stderr.read().decode()[-800:]  # 130: interrupted, resumable
    assert "Traceback" not in child.stderr.read().decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 2 <= summary["steps"] < 400
    assert (out / "checkpoints" / f"step-{summary['steps']:07d}").is_dir() and (out / "adapter").is_dir()
