"""The pair format's writer across kills: no half-written or orphaned shard survives a restart."""

import pytest

from freeprop.data import pairs as pairs_module
from freeprop.data.pairs import INDEX_PARTS, Pair, PairDataset, PairWriter, read_index
from freeprop.errors import FreePropInputError
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
    monkeypatch.setattr(PairWriter, "_commit_part", lambda self, rows: (_ for _ in ()).throw(KeyboardInterrupt))
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


def test_each_commit_writes_only_its_rows_and_close_merges_once(tmp_path, monkeypatch):
    """Rewriting the whole index at every shard is O(N²) over a build; a commit writes its own rows."""
    written, write = [], pairs_module._write_rows
    monkeypatch.setattr(pairs_module, "_write_rows", lambda path, rows: (written.append((path.name, len(rows))),
                                                                           write(path, rows)))  # fmt: skip
    with PairWriter(tmp_path, shard_size=2) as writer:
        for i in range(10):
            writer.add(pair(i))
        writer.add_failure("f0", "swap", "local", "boom")
        assert [n for _, n in written] == [2, 2, 2, 2, 2]  # one part per shard, never the whole index
    assert written[-1] == ("index.parquet", 11) and len(written) == 6  # merged once, on close
    assert not (tmp_path / INDEX_PARTS).exists()
    assert [r["sample_id"] for r in read_index(tmp_path).to_pylist()][-1] == "f0"


def test_a_writer_killed_before_close_leaves_a_readable_dataset_that_resumes(tmp_path):
    with PairWriter(tmp_path, shard_size=2) as writer:
        writer.add(pair(0))
        writer.add(pair(1))
    killed = PairWriter(tmp_path, shard_size=2)
    for i in range(2, 6):
        killed.add(pair(i))
    killed.add_failure("p6", "stylization", "global", "boom")  # not committed yet: forgotten by the kill
    del killed  # no close: the index holds p0–p1, parts hold p2–p5
    assert len(list((tmp_path / INDEX_PARTS).glob("part-*.parquet"))) == 2
    assert sorted(r["sample_id"] for r in PairDataset(tmp_path).rows) == [f"p{i}" for i in range(6)]
    with PairWriter(tmp_path, shard_size=2, revisit=lambda row: True) as again:
        assert again.done == {f"p{i}" for i in range(6)}
        again.add_failure("p6", "stylization", "global", "boom again")
        again.add(pair(7))
    rows = read_index(tmp_path).to_pylist()
    assert [r["sample_id"] for r in rows] == [*(f"p{i}" for i in range(6)), "p6", "p7"]
    assert not (tmp_path / INDEX_PARTS).exists()


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


def _write(root, count=4, shard_size=2):
    with PairWriter(root, shard_size=shard_size) as writer:
        for i in range(count):
            writer.add(pair(i))
        writer.add_failure("bad0", "stylization", "global", "standardize: FreePropInputError: broken")


def test_a_truncated_shard_keeps_its_other_samples_and_names_the_damaged_one(tmp_path):
    _write(tmp_path, count=4, shard_size=4)
    shard = tmp_path / "shard-000000.tar"
    data = shard.read_bytes()
    cut = data.index(b"p3.target.mp4")  # the last sample's target member is cut off
    shard.write_bytes(data[: cut + 600])
    dataset = PairDataset(tmp_path)
    assert [dataset[i].sample_id for i in range(3)] == ["p0", "p1", "p2"]  # before the damage: readable
    with pytest.raises(FreePropInputError, match=r"shard-000000.tar: no member p3.target.mp4 \(member p3.target.mp4 cut short\)"):
        dataset[3]


def test_repair_rebuilds_a_lost_index_from_the_shards(tmp_path, capsys):
    from freeprop.cli import main
    from freeprop.data.pairs import read_index

    _write(tmp_path)
    before = {r["sample_id"]: r for r in read_index(tmp_path).to_pylist()}
    assert all(len(r["checksum"]) == 64 for r in before.values() if r["status"] == "ok")
    (tmp_path / "index.parquet").write_bytes(b"garbage")  # the index is gone; the shards are whole
    assert main(["data", "repair", str(tmp_path), "--check"]) == 0  # nothing wrong with the samples
    assert (tmp_path / "index.parquet").read_bytes() == b"garbage"  # --check writes nothing
    assert main(["data", "repair", str(tmp_path)]) == 0
    after = {r["sample_id"]: r for r in read_index(tmp_path).to_pylist()}
    assert after == {k: v for k, v in before.items() if v["status"] == "ok"}  # the failure row went with the index
    assert (tmp_path / "index.parquet.bak").read_bytes() == b"garbage"
    assert "kept 4 samples and 0 failure rows; 0 bad, 0 lost; old index unreadable" in capsys.readouterr().out
    assert PairDataset(tmp_path)[3].instruction == before["p3"]["instruction"]


def test_repair_reports_damaged_members_per_sample_and_keeps_the_rest(tmp_path, capsys):
    import tarfile

    from freeprop.cli import main
    from freeprop.data.pairs import read_index

    _write(tmp_path)
    second = tmp_path / "shard-000001.tar"  # p2, p3: alter one byte of p2's target in place
    with tarfile.open(second) as tar:
        info = tar.getmember("p2.target.mp4")
    data = bytearray(second.read_bytes())
    data[info.offset_data + info.size // 2] ^= 0xFF
    second.write_bytes(bytes(data))
    assert main(["data", "repair", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "bad sample: p2 (shard-000001.tar): checksum mismatch (a member was altered)" in out
    assert "lost: p2 (ok in the old index, no complete copy in the shards)" in out
    assert main(["data", "repair", str(tmp_path)]) == 0
    rows = {r["sample_id"]: r["status"] for r in read_index(tmp_path).to_pylist()}
    assert rows == {"p0": "ok", "p1": "ok", "p3": "ok", "bad0": "failed"}  # the failure row is kept


def test_shards_written_by_a_pool_are_committed_as_they_finish_and_a_failed_one_is_not(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tests.data.test_executors import packed_pairs

    items = packed_pairs(tmp_path, 7)
    with ThreadPoolExecutor(3) as pool, PairWriter(tmp_path / "out", shard_size=2, pool=pool) as writer:
        for folder, row in items:
            writer.add_packed(folder, row)
    rows = read_index(tmp_path / "out").to_pylist()
    assert sorted(r["sample_id"] for r in rows) == [f"p{i}" for i in range(7)]
    assert {r["shard"] for r in rows} == {p.name for p in (tmp_path / "out").glob("shard-*.tar")}

    items = packed_pairs(tmp_path, 2)
    (tmp_path / "packed-1" / "meta.json").unlink()  # a broken artefact: the shard cannot be written
    writer = PairWriter(tmp_path / "again", shard_size=2)
    with pytest.raises(KeyError):
        for folder, row in items:
            writer.add_packed(folder, row)
    assert not (tmp_path / "again" / "index.parquet").exists() and not list((tmp_path / "again").glob("shard-*.tar"))
