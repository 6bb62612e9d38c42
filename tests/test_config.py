"""Recipes that start from another (`base:`), and `freeprop train --print-config`."""

import dataclasses
import subprocess
import sys

import pytest
import yaml

from freeprop.config import read_recipe
from freeprop.errors import FreePropInputError
from freeprop.training.config import load_config


def write(path, text):
    path.write_text(text)
    return path


def test_a_recipe_overrides_its_base_key_by_key(tmp_path):
    write(tmp_path / "parent.yaml", "seed: 3\nmax_steps: 10\noptim:\n  lr: 1.0e-3\n  warmup_steps: 7\n")
    child = write(tmp_path / "child.yaml", "base: parent.yaml\nmax_steps: 20\noptim:\n  lr: 2.0e-4\n")
    cfg = load_config(child, ["seed=5"])
    # the child's keys win, the base's others stay (within a section too), overrides come last
    assert (cfg.max_steps, cfg.optim.lr, cfg.optim.warmup_steps, cfg.seed) == (20, 2e-4, 7, 5)


def test_a_base_is_found_beside_the_recipe_then_among_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "local.yaml", "seed: 9\n")
    beside = write(tmp_path / "sub" / "a.yaml", "base: local.yaml\n")
    shipped = write(tmp_path / "sub" / "b.yaml", "base: small-motion\nseed: 1\n")
    assert load_config(beside).seed == 9
    expected = dataclasses.replace(load_config("small-motion"), seed=1)
    assert load_config(shipped) == expected


def test_a_chain_of_bases_is_read_in_order(tmp_path):
    write(tmp_path / "a.yaml", "seed: 1\nmax_steps: 1\nbatch_size: 1\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nmax_steps: 2\nbatch_size: 2\n")
    c = write(tmp_path / "c.yaml", "base: b.yaml\nbatch_size: 3\n")
    assert read_recipe(c) == {"seed": 1, "max_steps": 2, "batch_size": 3}


@pytest.mark.parametrize("text, message", [
    ("base: loop.yaml\n", "comes back to itself"),
    ("base: [a, b]\n", "must name one recipe"),
    ("base: missing.yaml\n", "no such config file"),
])
def test_bad_bases_are_one_clear_error(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    loop = write(tmp_path / "loop.yaml", text)
    with pytest.raises(FreePropInputError, match=message):
        load_config(loop)


def test_shipped_recipes_resolve_with_their_bases():
    # stage 10 = stage 9's recipe at a CPU's batch with photographs: what its file gives plus what stage 9's holds
    photos, gpu = load_config("small-photos"), load_config("small-gpu-camouflage")
    assert (photos.data.photos, photos.batch_size, photos.optim.lr) == (0.5, 8, 5e-5)
    assert (photos.data.camouflage, photos.data.leaves, photos.loss.logit_mean) == (0.5, 0.5, -2.0)
    assert photos.loss == gpu.loss and photos.lora == gpu.lora
    assert load_config("wan2.1-fun-14b").loss == load_config("wan2.1-fun-1.3b").loss
    assert "base" not in read_recipe("small-fine")


def test_print_config_prints_the_resolved_recipe(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "freeprop.cli", "train", "small-fine", "seed=4", "--print-config"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout
    printed = write(tmp_path / "printed.yaml", out)
    assert "base" not in yaml.safe_load(out)
    assert load_config(printed) == load_config("small-fine", ["seed=4"])
    assert not (tmp_path / "runs").exists()  # nothing trained or written

