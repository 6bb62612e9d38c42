"""The pair format's writer across kills: no half-written or orphaned shard survives a restart."""

import pytest

from freeprop.data.pairs import Pair, PairDataset, PairWriter
from tests.conftest import moving_pattern


def pair(i: int) -> Pair:
    source = moving_pattern(frames=3, height=16, width=16, speed=i + 1)
    return Pair(f"p{i}", source, 255 - source, "stylization", "global")


def test_a_kill_between_shard_rename_and_index_write_leaves_no_orphan(tmp_path, monkeypatch):
    with PairWriter(tmp_path, shard_size=2) as writer:
        writer.add(pair(0))
        writer.add(pair(1))  # shard 0 committed and indexed
    writer = PairWriter(tmp_path, shard_size=2)
    writer.add(pair(2))
    monkeypatch.setattr(PairWriter, "_write_index", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        writer.add(pair(3))  # shard-000001.tar renamed into place, index not written: the kill window
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.glob("shard-*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    with PairWriter(tmp_path, shard_size=2) as again:  # restart: the orphan goes, its samples are redone
        for i in range(4):
            if f"p{i}" not in again.done:
                again.add(pair(i))
    data = PairDataset(tmp_path)
    assert sorted(r["sample_id"] for r in data.rows) == ["p0", "p1", "p2", "p3"]
    indexed = {r["shard"] for r in data.rows}
    assert {p.name for p in tmp_path.glob("shard-*.tar")} == indexed  # every shard on disk is indexed


def test_a_full_disk_during_a_pair_write_keeps_the_dataset(tmp_path):
    """Under a file-size limit (a full disk, as far as the writer can tell) `data synth` stops with one
    line; the dataset it had stays whole, and the same command resumes it once there is room."""
    import resource
    import signal
    import subprocess
    import sys

    base = [sys.executable, "-m", "freeprop.cli", "data", "synth", str(tmp_path / "d"), "--val", "0", "--test", "0",
            "--frames", "5", "--size", "16x16"]
    subprocess.run([*base, "--train", "4"], check=True, capture_output=True)
    before = PairDataset(tmp_path / "d").rows

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    full = subprocess.run([*base, "--train", "12"], preexec_fn=small_disk, capture_output=True, text=True)
    err = full.stderr.strip().splitlines()[-1]
    assert full.returncode == 1 and err.startswith("freeprop: error: the disk is full") and "Traceback" not in full.stderr
    assert PairDataset(tmp_path / "d").rows == before  # the previous state, intact and readable
    subprocess.run([*base, "--train", "12"], check=True, capture_output=True)
    assert len(PairDataset(tmp_path / "d").rows) == 12
