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
