"""The pair format: one contract for every producer (synthetic generator, FFP-300K pipeline) and
consumer (training, evaluation). See `shared/DESIGN.md`.

A dataset is a folder of WebDataset-style tar shards plus one Parquet index:

    root/
      shard-000000.tar    members "<sample_id>.source.mp4", ".target.mp4", [".mask.mp4"], ".meta.json"
      shard-000001.tar
      index.parquet       one row per sample: sample_id, shard, task, track, status, error, sizes, captions,
                          checksum (sha256 of the video members); each row is also in its .meta.json,
                          so `repair_index` can rebuild the index from the shards

Target frame 0 is the edited first frame. A shard becomes visible (renamed from `.partial`) only once
complete, and its rows are committed right after, so a killed writer loses at most the shard in
progress and a re-run with the same sample ids skips what is done (`PairWriter.done`). While a writer
runs, each commit writes only its own rows, as `index.parts/part-NNNNNNNN.parquet` (rewriting the
whole index per shard would cost O(N²) over a 300K-pair build); `close` merges them into
`index.parquet` once. `read_index` reads the index and any parts a killed writer left (later rows win).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from freeprop.defaults import TASKS
from freeprop.errors import FreePropInputError
from freeprop.paths import inside, safe_name
from freeprop.video import DEFAULT_FPS, Video, atomic_path, read_video, write_video

TRACKS = ("local", "global")
INDEX = "index.parquet"
INDEX_PARTS = "index.parts"  # the rows of each commit of a writer still running (merged on close)
PAIR_CRF = 12  # H.264 quality of stored pairs (visually lossless)
INDEX_COLUMNS = {
    "sample_id": pa.string(),
    "shard": pa.string(),
    "task": pa.string(),
    "track": pa.string(),
    "status": pa.string(),
    "error": pa.string(),
    "num_frames": pa.int32(),
    "height": pa.int32(),
    "width": pa.int32(),
    "fps": pa.float32(),
    "instruction": pa.string(),
    "source_caption": pa.string(),
    "target_caption": pa.string(),
    "has_mask": pa.bool_(),
    "split": pa.string(),
    "checksum": pa.string(),  # sha256 of the sample's video members (absent in datasets older than it)
}
OPTIONAL_COLUMNS = ("checksum",)
VIDEO_MEMBERS = ("source.mp4", "target.mp4", "mask.mp4")


@dataclass
class Pair:
    """One (source, edited) video pair of the pair format."""

    sample_id: str
    source: np.ndarray  # uint8 [F, H, W, 3]
    target: np.ndarray  # uint8 [F, H, W, 3]; target[0] is the edited first frame
    task: str
    track: str
    fps: float = DEFAULT_FPS
    mask: np.ndarray | None = None  # uint8 [F, H, W] (255 = edited), local track
    instruction: str = ""
    source_caption: str = ""
    target_caption: str = ""
    split: str = "train"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS or self.track not in TRACKS:
            raise ValueError(
                f"task must be one of {TASKS} and track one of {TRACKS}, got {self.task}/{self.track}"
            )
        if self.source.shape != self.target.shape:
            raise ValueError(f"source {self.source.shape} and target {self.target.shape} differ in shape")
        if "/" in self.sample_id or "." in self.sample_id:
            raise ValueError(f"sample_id may not contain '/' or '.': {self.sample_id!r}")


def _encode_video(frames: np.ndarray, fps: float, crf: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_video(path, frames, fps=fps, crf=crf)
        return path.read_bytes()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_sample(tar: tarfile.TarFile, members: dict[str, bytes], row: dict) -> None:
    """A sample's members into an open shard, its `meta.json` carrying its final index row."""
    meta = json.loads(members["meta.json"])
    members = members | {"meta.json": json.dumps(meta | {"index": row}).encode()}
    for kind in (*VIDEO_MEMBERS, "meta.json"):
        if kind in members:
            _add_member(tar, f"{row['sample_id']}.{kind}", members[kind])


def encode_pair(pair: Pair, crf: int = PAIR_CRF) -> tuple[dict[str, bytes], dict]:
    """A pair's shard members (kind → bytes: the H.264 videos and `meta.json`) and its index row, shard
    not yet set — the expensive part of writing a pair, which a build runs in its workers
    (`PairWriter.add_encoded`)."""
    videos = {"source.mp4": _encode_video(pair.source, pair.fps, crf),
              "target.mp4": _encode_video(pair.target, pair.fps, crf)}  # fmt: skip
    if pair.mask is not None:
        mask = np.repeat(np.asarray(pair.mask, np.uint8)[..., None], 3, axis=-1)
        videos["mask.mp4"] = _encode_video(mask, pair.fps, crf)
    f, h, w = pair.source.shape[:3]
    row = dict(
        sample_id=pair.sample_id, shard="", task=pair.task, track=pair.track, status="ok", error="",
        num_frames=f, height=h, width=w, fps=pair.fps, instruction=pair.instruction,
        source_caption=pair.source_caption, target_caption=pair.target_caption, has_mask=pair.mask is not None,
        split=pair.split, checksum=checksum(videos),
    )  # fmt: skip
    # the sample's index row travels in its shard too: `repair_index` rebuilds the index from shards
    return videos | {"meta.json": json.dumps(pair.meta | {"fps": pair.fps, "index": row}).encode()}, row


PACKED_RECORD = "row.json"  # in a packed folder: the index row (shard unset) and the dedup hashes


def save_packed(folder: Path, members: dict[str, bytes], row: dict, hashes: list[int]) -> None:
    """A sample's encoded shard members as files in `folder`, written whole (a kill leaves none or all)."""
    tmp = Path(tempfile.mkdtemp(prefix=".packed.", dir=folder.parent))
    for kind, data in members.items():
        (tmp / kind).write_bytes(data)
    (tmp / PACKED_RECORD).write_text(json.dumps({"row": row, "hashes": hashes}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def read_packed_record(folder: str | os.PathLike) -> tuple[dict, list[int]]:
    """(index row, dedup hashes) of a packed folder — what the driver needs, not the video bytes."""
    record = json.loads((Path(folder) / PACKED_RECORD).read_text())
    return record["row"], record["hashes"]


def write_packed_shard(path: str, items: list[tuple[str, dict]]) -> str:
    """Write the shard `path` from packed folders and their final index rows (a build worker's job, so the
    driver never handles video bytes): written as `.partial` and renamed whole, then the folders are
    removed. Each sample's `meta.json` member carries its final row. Returns the path."""
    partial = Path(path + ".partial")
    with tarfile.open(partial, "w") as tar:
        for folder, row in items:
            _add_sample(tar, {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.name != PACKED_RECORD}, row)
    os.replace(partial, path)
    for folder, _ in items:
        shutil.rmtree(folder, ignore_errors=True)
    return path


class PairWriter:
    """Write pairs into shards of `shard_size` samples and keep the index in step (see the module
    docstring: a part per commit, merged into `index.parquet` on close).

    Use as a context manager; `done` holds the sample ids already committed (for resuming).
    Failed samples are recorded with `add_failure` (status "failed", the stage and reason in `error`);
    their rows are committed with the next shard, every `shard_size` failures, or on close (a killed
    writer may forget a few failures, which a re-run then retries).
    """

    def __init__(self, root: str | os.PathLike, shard_size: int = 64, crf: int = PAIR_CRF, revisit=None,
                 pool=None):  # fmt: skip
        """`revisit(row) → bool`: index rows (failures) whose samples are to run again: dropped from the
        index (when it is merged) and from `done`. `pool`: a `concurrent.futures`-style executor (`submit`)
        that writes the shards of `add_packed` (the build's workers); None writes them here."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.shard_size, self.crf = shard_size, crf
        rows = read_index(self.root).to_pylist() if has_index(self.root) else []
        self.rows = [r for r in rows if not (revisit and r["status"] != "ok" and revisit(r))]
        self._merge_on_close = len(self.rows) != len(rows) or (self.root / INDEX_PARTS).is_dir()
        self.done = {r["sample_id"] for r in self.rows}
        for stale in self.root.glob("*.partial"):  # a shard a killed writer left unfinished
            stale.unlink()
        indexed = {r["shard"] for r in rows}
        for orphan in self.root.glob("shard-*.tar"):  # renamed, but killed before its rows were committed:
            if orphan.name not in indexed:  # its samples are not `done`, so they are written again
                orphan.unlink()
        self._pending: list[dict] = []  # rows of the open shard
        self._packed: list[tuple[str, dict]] = []  # (packed folder, row) of the next shard to submit
        self._in_flight: list[tuple] = []  # (future, rows) of shards being written by the pool
        self.pool = pool
        self._uncommitted: list[dict] = []  # failure rows not committed yet (they go with the next part)
        self._tar: tarfile.TarFile | None = None
        self._shard_index = 1 + max(
            [int(p.stem.split("-")[1]) for p in self.root.glob("shard-*.tar")], default=-1
        )
        parts = self.root / INDEX_PARTS
        self._part_index = 1 + max([int(p.stem.split("-")[1]) for p in parts.glob("part-*.parquet")], default=-1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next_shard_name(self) -> str:
        self._shard_index += 1
        return f"shard-{self._shard_index - 1:06d}.tar"

    def _open_shard(self) -> None:
        self._shard_name = self._next_shard_name()
        self._tar = tarfile.open(self.root / (self._shard_name + ".partial"), "w")  # noqa: SIM115 (spans calls)

    def add_packed(self, folder: str, row: dict) -> None:
        """Add a pair a build worker packed into `folder` (`save_packed`): every `shard_size` of them
        become one shard, written by `pool` (`write_packed_shard`); its rows are committed when it is."""
        if row["sample_id"] in self.done:
            return
        self._packed.append((folder, row))
        self.done.add(row["sample_id"])
        if len(self._packed) >= self.shard_size:
            self._submit_packed()
        self._collect(wait=False)

    def _submit_packed(self) -> None:
        name = self._next_shard_name()
        items = [(folder, row | {"shard": name}) for folder, row in self._packed]
        path = str(self.root / name)
        if self.pool is not None:
            job = self.pool.submit(write_packed_shard, path, items)
        else:
            job = Future()
            job.set_result(write_packed_shard(path, items))
        self._in_flight.append((job, [row for _, row in items]))
        self._packed = []

    def _collect(self, wait: bool) -> None:
        """Commit the rows of the shards the pool has written (all of them, waiting, with `wait`)."""
        still = []
        for job, rows in self._in_flight:
            if wait or job.done():
                job.result()  # a failed write raises here: its shard stays `.partial`, its samples undone
                self.rows.extend(rows)
                self._commit_part(rows)
            else:
                still.append((job, rows))
        self._in_flight = still

    def add(self, pair: Pair) -> None:
        if pair.sample_id not in self.done:
            self.add_encoded(*encode_pair(pair, self.crf))

    def add_encoded(self, members: dict[str, bytes], row: dict) -> None:
        """Add a pair encoded elsewhere (`encode_pair`, e.g. in a build worker): its members go into the
        open shard as they are; only the shard name in its row (and its meta member's copy) is set here."""
        sid = row["sample_id"]
        if sid in self.done:
            return
        if self._tar is None:
            self._open_shard()
        row = row | {"shard": self._shard_name}
        _add_sample(self._tar, members, row)
        self._pending.append(row)
        self.done.add(sid)
        if len(self._pending) >= self.shard_size:
            self._commit_shard()

    def add_failure(
        self, sample_id: str, task: str, track: str, error: str, split: str = "train", status: str = "failed"
    ) -> None:
        """Record a sample that produced no pair: status "failed" (an error) or "filtered" (a quality rule)."""
        row = {k: None for k in INDEX_COLUMNS} | dict(
            sample_id=sample_id, shard="", task=task, track=track, status=status, error=error, split=split
        )
        self.rows.append(row)
        self.done.add(sample_id)
        self._uncommitted.append(row)
        if len(self._uncommitted) >= self.shard_size:  # committed in batches, not per row
            self._commit_part([])

    def _commit_shard(self) -> None:
        self._tar.close()
        os.replace(self.root / (self._shard_name + ".partial"), self.root / self._shard_name)
        self.rows.extend(self._pending)
        self._commit_part(self._pending)
        self._pending, self._tar = [], None

    def _commit_part(self, rows: list[dict]) -> None:
        """Write `rows` and the uncommitted failures as the next index part (O(rows), not O(index))."""
        parts = self.root / INDEX_PARTS
        parts.mkdir(exist_ok=True)
        _write_rows(parts / f"part-{self._part_index:08d}.parquet", [*self._uncommitted, *rows])
        self._part_index += 1
        self._uncommitted, self._merge_on_close = [], True

    def close(self) -> None:
        """Commit what is open, then merge the index once: `index.parquet` whole, the parts removed."""
        if self._tar is not None:
            self._commit_shard()
        if self._packed:
            self._submit_packed()
        self._collect(wait=True)
        if self._uncommitted or self._merge_on_close:
            _write_rows(self.root / INDEX, self.rows)
            self._uncommitted, self._merge_on_close = [], False
            shutil.rmtree(self.root / INDEX_PARTS, ignore_errors=True)


def _write_rows(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(INDEX_COLUMNS)), tmp)


def _index_files(root: Path) -> list[Path]:
    """The merged index (if any) and then the parts of a writer that did not close, oldest first."""
    return ([root / INDEX] if (root / INDEX).is_file() else []) + sorted((root / INDEX_PARTS).glob("part-*.parquet"))


def has_index(root: str | os.PathLike) -> bool:
    """Whether `root` holds an index (merged, or the parts of a writer that did not close)."""
    return bool(_index_files(Path(root)))


def read_index(root: str | os.PathLike) -> pa.Table:
    """The dataset's index, checked: readable Parquet with every column of the pair format; with the
    parts a killed writer left, merged (a sample's later row replaces its earlier one)."""
    root = Path(root)
    files = _index_files(root)
    if not files:
        raise FreePropInputError(f"{root}: no {INDEX}; pass a folder written in the pair format")
    tables = [_read_index_file(path, root) for path in files]
    if len(tables) == 1:
        return tables[0]
    latest = {row["sample_id"]: row for table in tables for row in table.to_pylist()}
    return pa.Table.from_pylist(list(latest.values()), schema=pa.schema(INDEX_COLUMNS))


def _read_index_file(path: Path, root: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise FreePropInputError(f"{path}: unreadable index ({type(err).__name__}: {str(err)[:120]})") from None
    missing = [name for name in INDEX_COLUMNS if name not in table.column_names and name not in OPTIONAL_COLUMNS]
    if missing:
        raise FreePropInputError(f"{path}: not a pair-format index (missing columns: {', '.join(missing)}); "
                                 f"rebuild it from the shards: freeprop data repair {root}")
    for name in OPTIONAL_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(len(table), INDEX_COLUMNS[name]))
    return table.select(list(INDEX_COLUMNS))


def checksum(videos: dict[str, bytes]) -> str:
    """sha256 over a sample's video members (kind → bytes), in a fixed order."""
    import hashlib

    digest = hashlib.sha256()
    for kind in VIDEO_MEMBERS:
        if kind in videos:
            digest.update(kind.encode() + len(videos[kind]).to_bytes(8, "little") + videos[kind])
    return digest.hexdigest()


def scan_shard(path: Path) -> tuple[dict[str, tarfile.TarInfo], str | None]:
    """The complete members of a shard by name, and what stopped the scan early (None if nothing did):
    a shard truncated or damaged part-way keeps every member before the damage."""
    members, problem = {}, None
    size = path.stat().st_size
    try:
        with tarfile.open(path) as tar:
            while True:
                try:
                    info = tar.next()
                except (tarfile.TarError, OSError) as err:
                    problem = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
                    break
                if info is None:
                    break
                if info.offset_data + info.size > size:
                    problem = f"member {info.name} cut short"
                    break
                members[info.name] = info
    except (tarfile.TarError, OSError) as err:
        problem = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
    return members, problem


def _decode(data: bytes) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        tmp.write(data)
        tmp.flush()
        return read_video(tmp.name).frames


class PairDataset:
    """Random access to the `ok` samples of a pair-format folder (optionally one split / some tasks).

    `dataset[i]` returns a `Pair` with decoded frames. Tar members are located once per shard
    (offsets cached), so reading sample i touches only its own bytes.
    """

    def __init__(
        self, root: str | os.PathLike, split: str | None = None, tasks: tuple[str, ...] | None = None
    ):
        self.root = Path(root)
        rows = [r for r in read_index(self.root).to_pylist() if r["status"] == "ok"]
        for row in rows:  # names from the index meet the file system: they stay in the dataset folder
            safe_name(row["sample_id"], f"{self.root / INDEX}: sample id")
            inside(self.root, row["shard"], f"{self.root / INDEX}: shard of {row['sample_id']}")
        if split is not None:
            rows = [r for r in rows if r["split"] == split]
        if tasks:
            rows = [r for r in rows if r["task"] in tasks]
        if not rows:
            raise FreePropInputError(f"{root}: no usable samples (split={split}, tasks={tasks})")
        self.rows = rows
        self._members: dict[str, dict[str, tarfile.TarInfo]] = {}
        self._problems: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _member_bytes(self, shard: str, name: str) -> bytes | None:
        if shard not in self._members:
            if not (self.root / shard).is_file():
                raise FreePropInputError(f"{self.root / shard}: shard missing (named by {INDEX}); "
                                         f"freeprop data repair {self.root} rebuilds the index from the shards there are")  # fmt: skip
            self._members[shard], self._problems[shard] = scan_shard(self.root / shard)
        info = self._members[shard].get(name)
        if info is None:
            return None
        with open(self.root / shard, "rb") as handle:
            handle.seek(info.offset_data)
            return handle.read(info.size)

    def _video(self, shard: str, name: str, required: bool = False) -> np.ndarray | None:
        """A decoded video member; a missing or corrupt one is named by shard and member (the shard's
        other samples stay readable)."""
        data = self._member_bytes(shard, name)
        if data is None:
            if required:
                why = self._problems.get(shard) or "not in the shard"
                raise FreePropInputError(f"{self.root / shard}: no member {name} ({why})")
            return None
        try:
            return _decode(data)
        except FreePropInputError:
            raise FreePropInputError(f"{self.root / shard}: member {name} is not a readable video") from None

    def __getitem__(self, index: int) -> Pair:
        row = self.rows[index]
        sid, shard = row["sample_id"], row["shard"]
        source = self._video(shard, f"{sid}.source.mp4", required=True)
        target = self._video(shard, f"{sid}.target.mp4", required=True)
        mask = self._video(shard, f"{sid}.mask.mp4")
        mask = None if mask is None else (mask[..., 0] > 127).astype(np.uint8) * 255
        meta = json.loads(self._member_bytes(shard, f"{sid}.meta.json") or b"{}")
        return Pair(
            sid,
            source,
            target,
            row["task"],
            row["track"],
            fps=row["fps"],
            mask=mask,
            instruction=row["instruction"] or "",
            source_caption=row["source_caption"] or "",
            target_caption=row["target_caption"] or "",
            split=row["split"],
            meta=meta,
        )

    def __iter__(self) -> Iterator[Pair]:
        for i in range(len(self)):
            yield self[i]


def video_of(pair: Pair, which: str = "source") -> Video:
    return Video(getattr(pair, which), pair.fps)


def repair_index(root: str | os.PathLike, write: bool = True) -> dict:
    """Rebuild `index.parquet` from the shards (`freeprop data repair`).

    Every sample whose video members are complete and match their recorded checksum gets back the
    index row stored in its `.meta.json` member; a damaged member (cut short, missing, altered) is
    reported for its sample and the shard's other samples are kept. Failure rows of the old index are
    kept when it can still be read. With `write`, the old index is kept as `index.parquet.bak` and the
    new one written atomically; without, nothing changes (a check). Returns the report.
    """
    root = Path(root)
    report = {"kept": 0, "bad": [], "lost": [], "shards": [], "failures_kept": 0, "old_index": "missing"}
    old_rows = []
    if has_index(root):
        try:
            old_rows, report["old_index"] = read_index(root).to_pylist(), "read"
        except FreePropInputError:
            report["old_index"] = "unreadable"
    old_ok = {r["sample_id"]: r for r in old_rows if r["status"] == "ok"}
    rows: dict[str, dict] = {}
    for shard in sorted(root.glob("shard-*.tar")):
        members, problem = scan_shard(shard)
        if problem:
            report["shards"].append(f"{shard.name}: {problem}")
        for sid, kinds in _by_sample(members).items():
            reason, row = _sample_row(shard, sid, kinds, old_ok.get(sid))
            if reason:
                report["bad"].append(f"{sid} ({shard.name}): {reason}")
            elif sid in rows:
                report["bad"].append(f"{sid} ({shard.name}): duplicate of the copy in {rows[sid]['shard']}")
            else:
                rows[sid] = row
    report["lost"] = sorted(set(old_ok) - set(rows))
    failures = [r for r in old_rows if r["status"] != "ok" and r["sample_id"] not in rows]
    report["kept"], report["failures_kept"] = len(rows), len(failures)
    if write:
        if (root / INDEX).is_file():
            shutil.copyfile(root / INDEX, root / (INDEX + ".bak"))
        _write_rows(root / INDEX, [*rows.values(), *failures])
        shutil.rmtree(root / INDEX_PARTS, ignore_errors=True)  # merged into the new index
    return report


def _by_sample(members: dict[str, tarfile.TarInfo]) -> dict[str, dict[str, tarfile.TarInfo]]:
    grouped: dict[str, dict[str, tarfile.TarInfo]] = {}
    for name, info in members.items():
        sid, _, kind = name.partition(".")
        grouped.setdefault(sid, {})[kind] = info
    return grouped


def _sample_row(shard: Path, sid: str, kinds: dict, old_row: dict | None) -> tuple[str, dict | None]:
    """(what is wrong, or "") and the sample's index row, from its members."""
    with open(shard, "rb") as handle:

        def read(kind):
            handle.seek(kinds[kind].offset_data)
            return handle.read(kinds[kind].size)

        try:
            row = json.loads(read("meta.json")).get("index") if "meta.json" in kinds else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "meta.json is not JSON", None
        if row is None:  # written before shards carried their rows: the old index's row, if any
            if old_row is None or old_row["shard"] != shard.name:
                return "no index row in meta.json and none in the old index", None
            row = old_row
        needed = ["source.mp4", "target.mp4"] + (["mask.mp4"] if row.get("has_mask") else [])
        missing = [kind for kind in needed if kind not in kinds]
        if missing:
            return f"missing {', '.join(missing)}", None
        videos = {kind: read(kind) for kind in VIDEO_MEMBERS if kind in kinds}
    if row.get("checksum") and checksum(videos) != row["checksum"]:
        return "checksum mismatch (a member was altered)", None
    try:
        safe_name(sid, f"{shard}: sample id")
    except FreePropInputError as err:
        return str(err), None
    return "", {name: row.get(name) for name in INDEX_COLUMNS} | {"shard": shard.name, "status": "ok", "error": ""}
