"""Training data rendered on the fly (`data.synthetic_pairs`) and batches prepared by worker processes
(`data.num_workers`): the same pairs `freeprop data synth` writes, the same batch order with and
without workers, and exact resumption from a checkpoint's data position."""

import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
import torch

from freeprop.codecs import PixelCodec
from freeprop.data.synthetic import SPLIT_SEEDS, TASKS, make_pair
from freeprop.training.config import DataConfig, load_config
from freeprop.training.data import SyntheticLatentDataset
from freeprop.training.recipe import Trainer
from freeprop.video import to_tensor


def test_item_i_is_the_pair_data_synth_writes_as_sample_i():
    cfg = DataConfig(synthetic_pairs=8, num_frames=5, height=16, width=16)
    codec, data = PixelCodec(2), SyntheticLatentDataset(cfg, PixelCodec(2), (512, 16))
    assert len(data) == 8
    for i in (0, 3, 6):  # swap, stylization, modification
        pair = make_pair(SPLIT_SEEDS["train"] + i, "train", TASKS[i % 4], 5, 16, 16)
        item = data[i]
        for key, video in (("source", pair.source), ("target", pair.target), ("first_frame", pair.target[:1])):
            assert torch.allclose(codec.decode(item[key][None])[0], to_tensor(video), atol=1e-6), (i, key)
        assert torch.equal(item["text"], torch.zeros(512, 16))
    assert not torch.equal(data[0]["source"], data[1]["source"])
    removal = SyntheticLatentDataset(DataConfig(synthetic_pairs=4, num_frames=5, height=16, width=16,
                                                tasks=("removal",)), codec, (512, 16))
    pair = make_pair(SPLIT_SEEDS["train"] + 2, "train", "removal", 5, 16, 16)
    assert torch.allclose(codec.decode(removal[2]["target"][None])[0], to_tensor(pair.target), atol=1e-6)


@pytest.mark.parametrize("look", ["leaves", "camouflage", "photos"])
def test_look_shares_reach_the_rendered_pairs(look):
    cfg = DataConfig(synthetic_pairs=4, num_frames=3, height=16, width=16, **{look: 1.0})
    codec = PixelCodec(2)
    pair = make_pair(SPLIT_SEEDS["train"] + 1, "train", TASKS[1], 3, 16, 16, **{look: 1.0})
    item = SyntheticLatentDataset(cfg, codec, (512, 16))[1]
    assert torch.allclose(codec.decode(item["source"][None])[0], to_tensor(pair.source), atol=1e-6)
    plain = SyntheticLatentDataset(replace(cfg, **{look: 0.0}), codec, (512, 16))[1]
    assert not torch.equal(plain["source"], item["source"])


def test_motion_max_speeds_up_the_rendered_pairs():
    """Pair i's motion is scaled by a factor in [1, motion_max] of its own; 1 renders the plain pair."""
    codec, cfg = PixelCodec(1), DataConfig(synthetic_pairs=12, num_frames=9, height=32, width=32, motion_max=3.0)
    plain, fast = SyntheticLatentDataset(replace(cfg, motion_max=1.0), codec), SyntheticLatentDataset(cfg, codec)
    pair = make_pair(SPLIT_SEEDS["train"] + 5, "train", TASKS[1], 9, 32, 32)
    assert torch.allclose(codec.decode(plain[5]["source"][None])[0], to_tensor(pair.source), atol=1e-6)

    def change(item):  # mean frame-to-frame change of the source
        return (item["source"][:, 1:] - item["source"][:, :-1]).abs().mean().item()

    slow_changes = [change(plain[i]) for i in range(12)]
    fast_changes = [change(fast[i]) for i in range(12)]
    assert sum(fast_changes) > 1.3 * sum(slow_changes)
    assert all(f != s for f, s in zip(fast_changes, slow_changes) if s > 0)  # each pair scaled by its own factor


def test_synthetic_pairs_are_bounded_and_need_a_seeded_split():
    with pytest.raises(ValueError, match="data.synthetic_pairs"):
        DataConfig(synthetic_pairs=1_000_001)
    with pytest.raises(ValueError, match="data.leaves"):
        DataConfig(synthetic_pairs=4, leaves=1.5)
    with pytest.raises(ValueError, match="data.camouflage"):
        DataConfig(synthetic_pairs=4, camouflage=-0.1)
    with pytest.raises(ValueError, match="data.photos"):
        DataConfig(synthetic_pairs=4, photos=2.0)
    with pytest.raises(ValueError, match="data.motion_max"):
        DataConfig(synthetic_pairs=4, motion_max=0.5)
    with pytest.raises(ValueError, match="data.split"):
        SyntheticLatentDataset(DataConfig(synthetic_pairs=4, split="holdout"), PixelCodec(2))


def trainer(tmp_path, workers: int) -> Trainer:
    return Trainer(load_config("configs/tiny.yaml", [
        "data.synthetic_pairs=6", "data.num_frames=5", "data.height=16", "data.width=16", "batch_size=2",
        f"data.num_workers={workers}", f"output_dir={tmp_path}", "lora.rank=4", "lora.alpha=4"]))  # fmt: skip


def test_workers_give_the_same_batches_in_the_same_order_and_resume_at_the_data_position(tmp_path):
    plain = trainer(tmp_path / "a", 0)
    expected = [plain._next_batch() for _ in range(5)]  # 3 batches an epoch: crosses into epoch 1
    assert (plain.epoch, plain.position) == (1, 4)
    assert not torch.equal(expected[0]["source"], expected[3]["source"])  # a new permutation each epoch

    workers = trainer(tmp_path / "b", 2)
    for want in expected[:2]:
        got = workers._next_batch()
        assert all(torch.equal(got[k], want[k]) for k in want)
    workers.close()
    resumed = trainer(tmp_path / "c", 2)  # what `_load_checkpoint` restores: the data position
    resumed.epoch, resumed.position = workers.epoch, workers.position
    for want in expected[2:]:
        got = resumed._next_batch()
        assert all(torch.equal(got[k], want[k]) for k in want)
    resumed.close()


def test_a_program_that_never_closes_its_data_workers_still_exits(tmp_path):
    """At exit, multiprocessing ends leftover workers with SIGTERM and joins them: a worker that ignored
    SIGTERM hung the interpreter forever (CI stalled after all tests passed)."""
    program = textwrap.dedent(f"""
        from freeprop.training.config import load_config
        from freeprop.training.recipe import Trainer
        t = Trainer(load_config("configs/tiny.yaml", ["data.synthetic_pairs=6", "data.num_frames=5",
            "data.height=16", "data.width=16", "batch_size=2", "data.num_workers=2",
            "output_dir={tmp_path}", "lora.rank=4", "lora.alpha=4"]))
        t._next_batch()
        keep = [t, t]  # a reference cycle, as a test's or a notebook's objects often are
        keep.append(keep)
    """)
    child = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-800:]
