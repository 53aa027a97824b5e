"""``ParquetStore``: raw tick capture and export as Parquet files, partitioned by date and symbol.

Layout under ``root`` (the "table" of a kind is its folder, ``kind=<kind>`` by default)::

    <root>/kind=trade/date=2024-08-09/symbol=BTCUSDT/part-<ns>-<uuid>.parquet

With ``symbol_folders=False`` the symbol level is left out (``date=2024-08-09/part-<ns>-<uuid>.parquet``,
every symbol of a batch in one file): a backfill of thousands of symbols then writes a few large files
per batch instead of one small file per symbol. Reads accept both layouts under one root.

The date is the UTC day of the row's event time (``ts_event``; ``start`` for bars); a symbol is
percent-encoded in its folder name (``BTC/USD`` -> ``BTC%2FUSD``), and kept as a column in the file too.
Each file is written under a hidden temporary name, synced, and renamed into place with ``os.replace``,
so a reader sees a whole file or none of it.

Checkpointed runs (``hold_for_checkpoints``) name their parts ``part-<ns>-<uuid>.<job tag>.ckpt.parquet``
(the tag: 12 hex digits of a hash of the job's name); such a part is read only once its ``<ns>`` is at most
the job's *high-water mark*, the largest ``<ns>`` the job committed, which the checkpoint manifest
``<root>/_checkpoints/<job>/epoch-<N>-<ns>.json`` records (synced, then renamed into place after the
epoch's files). A run names its parts after the mark (``_PartNames.above``), so the files of an epoch
whose checkpoint was never committed (the process died between them) are never read, and the resumed run
writes those rows again. Each commit replaces the manifest, so a restart costs the same however long the
job has run, and a read reads one manifest per job. Before it writes an epoch's parts a run lists their
folders in ``<job>/pending`` (synced when a folder is new to the epoch; emptied at each commit), and the
next checkpointed run of the same job deletes its parts there past the mark (and their temporaries a
killed write left) before it writes, without walking the table.

``compact`` merges each finished day's parts into one file per folder (a live job writes one part per
symbol per close) and then deletes them; the merged file is named after the newest part it holds.

Files are never rewritten in place, so idempotency is applied when reading: ``read`` keeps one row per key by
the common rule of :mod:`mdp.stores.base` over the rows in write order (the ``<ns>`` in a part's name
orders files): the first final bar of the highest ``revision``, or the last provisional bar of a key
without a final one. A capture written twice, or a replayed range, does not double rows, and a bar
a later run closed hides the provisional one an earlier run left.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote

import polars as pl

from mdp.errors import ConfigError, PermanentStoreError, StoreError, TransientStoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores.base import KEYS, KINDS, TIME_COLUMN, ReadFilter, Store, dedupe

_DAY_NS: Final[int] = 86_400 * 1_000_000_000
_EPOCH: Final[date] = date(1970, 1, 1)
Compression = Literal["lz4", "uncompressed", "snappy", "gzip", "brotli", "zstd"]
_PERMANENT_OS_ERRORS = (PermissionError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
#: the folder of checkpoint manifests under ``root``
CHECKPOINTS = "_checkpoints"
_HELD = ".ckpt.parquet"
#: per job under ``_checkpoints/<job>/``: the folders the epoch under way writes into, one a line
PENDING = "pending"
#: a checkpointed part's name: its write order and its job's tag
_TAGGED = re.compile(r"part-(\d+)-[0-9a-f]+\.([0-9a-f]{12})\.ckpt\.parquet$")
#: how often a read lists a job's manifests again when one was replaced while it read
_MANIFEST_TRIES = 20
#: how often a read lists the parts again when a compaction merged some away while it read
_READ_TRIES = 20
#: a part's write order (its ``<ns>``), from its file name
_PART_NS = r"part-(\d+)-[0-9a-f]+(?:\.[0-9a-f]+)?(?:\.ckpt)?\.parquet$"
log = logging.getLogger(__name__)


class _PartNames:
    """Part-file names that sort in write order within this process and across processes on one host."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return f"part-{self._last:020d}-{uuid.uuid4().hex}.parquet"

    def above(self, ns: int) -> None:
        """Name every later part after ``ns`` (a job's high-water mark), whatever the wall clock says."""
        with self._lock:
            self._last = max(self._last, ns)


_NAMES = _PartNames()


@dataclass(frozen=True, slots=True)
class Compaction:
    """What ``ParquetStore.compact`` did: folders merged, the parts they held, rows in the merged files, and
    folders left for a later compaction."""

    folders: int = 0
    parts: int = 0
    rows: int = 0
    skipped: int = 0

    def __add__(self, other: Compaction) -> Compaction:
        return Compaction(
            self.folders + other.folders, self.parts + other.parts, self.rows + other.rows, self.skipped + other.skipped
        )


class ParquetStore(Store):
    """Records as Parquet files under ``root``, one folder per kind, date and symbol.

    Args:
        root: the capture folder (created if missing unless read-only).
        tables: folder name per kind under ``root`` (default ``kind=trade``, ``kind=quote``, ``kind=bar``).
        read_only: never create anything.
        compression: Parquet compression codec.
        compression_level: the codec's level; default 1 for zstd (Arrow's default: files about 10%
            larger than polars' level 3 for a quarter less CPU), the codec's own default otherwise.
        symbol_folders: one folder per symbol under each date (False: one file per date and batch).
    """

    backend: ClassVar[str] = "parquet"

    def __init__(
        self,
        root: str | Path,
        *,
        tables: Mapping[str, str] | None = None,
        read_only: bool = False,
        compression: Compression = "zstd",
        compression_level: int | None = None,
        symbol_folders: bool = True,
    ) -> None:
        super().__init__(tables=tables or {k: f"kind={k}" for k in KINDS}, read_only=read_only)
        self.root = Path(root)
        self.compression = compression
        self.compression_level = 1 if compression_level is None and compression == "zstd" else compression_level
        self.symbol_folders = symbol_folders
        self._hold_job: str | None = None  # the job whose epochs parts belong to (``hold_for_checkpoints``)
        #: the newest part the held job committed (its ``<ns>``; -1: none yet; None: not read yet)
        self._high_water: int | None = None
        #: parts written for the epoch under way (paths relative to ``root``), named by its manifest
        self._uncommitted: list[str] = []
        #: the folders this epoch's ``pending`` list names already
        self._pending_folders: set[str] = set()

    @classmethod
    def check_table(cls, name: str) -> str:
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise ConfigError(f"a parquet table is one folder name such as 'kind=trade', got {name!r}")
        return name

    @property
    def location(self) -> str:
        return f"parquet:{', '.join(str(self.root / t) for t in self.tables.values())}"

    def spec(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "tables": dict(self.tables),
            "compression": self.compression,
            "compression_level": self.compression_level,
            "symbol_folders": self.symbol_folders,
        }

    # -- backend ------------------------------------------------------------------------------------

    def _open(self) -> None:
        if not self.read_only:
            for table in self.tables.values():
                (self.root / table).mkdir(parents=True, exist_ok=True)

    def _write(self, kind: RecordKind, frame: pl.DataFrame) -> None:
        base = self.root / self.tables[kind]
        day = (pl.col(TIME_COLUMN[kind]) // _DAY_NS).alias("_day")
        by = ["_day", "symbol"] if self.symbol_folders else ["_day"]
        suffix = ".parquet" if self._hold_job is None else f".{_job_tag(self._hold_job)}{_HELD}"
        targets: list[tuple[Path, pl.DataFrame]] = []
        for key, part in frame.with_columns(day).partition_by(by, as_dict=True, maintain_order=True).items():
            folder = base / f"date={_day_name(int(key[0]))}"
            if self.symbol_folders:
                folder = folder / f"symbol={quote(str(key[1]), safe='')}"
            targets.append((folder / _NAMES.next().replace(".parquet", suffix), part))
        if self._hold_job is not None:
            # their folders listed before they exist, so a run that dies mid-epoch says where to clean up
            self._note_pending(self._hold_job, {str(target.parent.relative_to(self.root)) for target, _ in targets})
            self._uncommitted.extend(str(target.relative_to(self.root)) for target, _ in targets)
        staged: list[tuple[Path, Path]] = []
        try:
            for target, part in targets:
                folder, name = target.parent, target.name
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / f".{name}.tmp"
                staged.append((tmp, folder / name))
                with open(tmp, "wb") as fh:
                    part.drop("_day").write_parquet(
                        fh, compression=self.compression, compression_level=self.compression_level
                    )
                    fh.flush()
                    os.fsync(fh.fileno())
            self._staged()
            for tmp, final in staged:
                os.replace(tmp, final)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise

    def _read(self, where: ReadFilter) -> pl.DataFrame:
        for _ in range(_READ_TRIES):
            files = self._files(where)
            if not files:
                return pl.DataFrame(schema=SCHEMAS[where.kind])
            try:
                return dedupe(_in_write_order(files, where.expr()), where.kind)
            except FileNotFoundError:
                continue  # a compaction merged parts after they were listed: the listing finds its file now
        raise TransientStoreError(f"the parts under {self.root} kept being merged away while read; read again")

    def _close(self) -> None:
        return None

    # -- checkpoints ----------------------------------------------------------------------------------

    keeps_checkpoints: ClassVar[bool] = True

    def hold_for_checkpoints(self, job: str) -> None:
        """Name parts for ``job``'s epochs from now on, after deleting those of its epochs that were never
        committed (a run died before its checkpoint) and its temporaries."""
        self._check_open()
        self._hold_job = job
        with self._lock, self._translated(f"read the checkpoints of {job!r}"):
            self._high_water = self._job_high_water(job)
        _NAMES.above(self._high_water)  # a part named later is never taken for a committed one
        if self.read_only:
            return
        with self._lock, self._translated(f"clear the uncommitted parts of {job!r}"):
            dead = self._dead_parts(job, self._high_water)
            for f in dead:
                f.unlink(missing_ok=True)
            pending = self._pending_path(job)
            pending.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(pending, b"")
            self._pending_folders.clear()
        if dead:
            log.info("%s: deleted %d parts of job %s's uncommitted epochs", self.location, len(dead), job)

    def _write_checkpoint(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint) -> None:
        if frame.height:
            self._write(kind, frame)
        folder = self.root / CHECKPOINTS / checkpoint.job
        folder.mkdir(parents=True, exist_ok=True)
        held = self._hold_job == checkpoint.job
        before = self._high_water if held and self._high_water is not None else self._job_high_water(checkpoint.job)
        high_water = max([before, *(_part_ns(f) for f in self._uncommitted)])
        doc = {
            "job": checkpoint.job,
            "epoch": checkpoint.epoch,
            "graph": checkpoint.graph,
            "inputs": checkpoint.inputs,
            "watermark": checkpoint.watermark,
            "rows": checkpoint.rows,
            "offsets": checkpoint.offsets,
            "committed_ns": checkpoint.committed_ns,
            "final": checkpoint.final,
            "state": base64.b64encode(checkpoint.state).decode(),
            "files": list(self._uncommitted),
            "high_water": high_water,
        }
        # one manifest per commit (an epoch committed again, with the rows the end of input flushed after
        # it, names only those): the newest by name is the last checkpoint
        name = f"epoch-{checkpoint.epoch:012d}-{time.time_ns():020d}.json"
        _write_atomic(folder / name, json.dumps(doc, default=str).encode())
        if held:
            self._high_water = high_water
        self._uncommitted.clear()
        # The new manifest carries the checkpoint and the high-water mark of every commit before it, so the
        # older ones go: a job that commits every 5 s for months keeps one, and a read reads only that one.
        for old in folder.glob("epoch-*.json"):
            if old.name != name:
                old.unlink(missing_ok=True)
        if held:
            self._pending_path(checkpoint.job).write_bytes(b"")  # its parts are committed
            self._pending_folders.clear()

    def _manifests(self, job: str | None = None) -> list[Path]:
        base = self.root / CHECKPOINTS
        if not base.is_dir():
            return []
        return sorted(base.glob(f"{job or '*'}/*.json"))

    def _manifest_docs(self, job: str) -> list[tuple[Path, dict[str, Any]]]:
        """Every manifest of ``job`` and its content. A writer in another process replaces its manifest
        after each commit; when one vanishes between listing and reading, the folder is listed again."""
        for _ in range(_MANIFEST_TRIES):
            docs: list[tuple[Path, dict[str, Any]]] = []
            try:
                for path in self._manifests(job):
                    docs.append((path, json.loads(path.read_bytes())))
            except FileNotFoundError:
                continue
            return docs
        raise TransientStoreError(f"the checkpoints of {job!r} under {self.root} kept changing while read")

    def _job_high_water(self, job: str) -> int:
        """The ``<ns>`` of the newest part ``job`` committed (-1: none)."""
        return _high_water(doc for _, doc in self._manifest_docs(job))

    def _load_checkpoint(self, job: str) -> Checkpoint | None:
        epochs = [doc for path, doc in self._manifest_docs(job) if path.name.startswith("epoch-")]
        if not epochs:
            return None
        doc = epochs[-1]
        return Checkpoint(
            job=doc["job"],
            epoch=int(doc["epoch"]),
            graph=doc["graph"],
            inputs=doc["inputs"],
            watermark=int(doc["watermark"]),
            rows=int(doc["rows"]),
            state=base64.b64decode(doc["state"]),
            offsets=doc["offsets"],
            committed_ns=int(doc["committed_ns"]),
            final=bool(doc["final"]),
        )

    def _drop_checkpoint(self, job: str) -> None:
        """Forget the checkpoints but keep their files readable: one ``committed-<ns>.json`` keeps the
        high-water mark (and names the files, as the manifests did)."""
        docs = self._manifest_docs(job)
        epochs = [(path, doc) for path, doc in docs if path.name.startswith("epoch-")]
        if not epochs:
            return
        files = [f for _, doc in epochs for f in doc["files"]]
        target = self.root / CHECKPOINTS / job / f"committed-{time.time_ns():020d}.json"
        _write_atomic(target, json.dumps({"files": files, "high_water": _high_water(d for _, d in docs)}).encode())
        for path, _ in epochs:
            path.unlink()
        if self._hold_job == job:
            self._high_water = None

    def dead_files(self, job: str | None = None) -> list[Path]:
        """Files no read will show: checkpointed parts of epochs never committed (of ``job``, or of any
        job) and the temporaries of writes that were cut short (a write in progress in another process too)."""
        self._check_open()
        with self._lock, self._translated("list the uncommitted parts"):
            return self._dead_files(job)

    def _dead_files(self, job: str | None) -> list[Path]:
        if job is not None:
            return self._dead_parts(job, self._job_high_water(job))
        return self._walk_for_dead([f"*{_HELD}", ".part-*.tmp"])

    def _dead_parts(self, job: str, high_water: int) -> list[Path]:
        """``job``'s parts past ``high_water`` (its mark) and the temporaries of its writes a kill cut short."""
        pending = self._pending_path(job)
        if not pending.exists():
            # no list (the job's first run here, or a store written before there were lists): look at every
            # file, once per job, as its first run then starts the list
            return self._walk_for_dead([f"*.{_job_tag(job)}{_HELD}*"])
        # the folders the job listed before writing into them
        folders = {self.root / line for line in pending.read_text().splitlines() if line}
        tag = _job_tag(job)
        return sorted(
            f
            for folder in folders
            for f in itertools.chain(folder.glob(f"part-*.{tag}{_HELD}"), folder.glob(f".part-*.{tag}{_HELD}.tmp"))
            if _part_ns(f.name.lstrip(".")) > high_water
        )

    def _walk_for_dead(self, patterns: list[str]) -> list[Path]:
        """The files under the tables matching ``patterns`` that no read shows: temporaries, and checkpointed
        parts never committed."""
        shown = self._committed_filter()
        return [
            f
            for table in self.tables.values()
            if (self.root / table).is_dir()
            for pattern in patterns
            for f in (self.root / table).rglob(pattern)
            if f.name.endswith(".tmp") or not shown(f)
        ]

    def _committed_filter(self) -> Callable[[Path], bool]:
        """Whether a checkpointed part was committed: its ``<ns>`` is at most its job's high-water mark
        (parts named before the job tag existed: a manifest names it)."""
        base = self.root / CHECKPOINTS
        jobs = [d.name for d in base.iterdir() if d.is_dir()] if base.is_dir() else []
        high_waters = {_job_tag(job): self._job_high_water(job) for job in jobs}
        named: set[str] | None = None

        def shown(part: Path) -> bool:
            nonlocal named
            tagged = _TAGGED.search(part.name)
            if tagged is not None:
                return int(tagged[1]) <= high_waters.get(tagged[2], -1)
            if named is None:
                named = {f for p in self._manifests() for f in json.loads(p.read_bytes())["files"]}
            return str(part.relative_to(self.root)) in named

        return shown

    def _pending_path(self, job: str) -> Path:
        return self.root / CHECKPOINTS / job / PENDING

    def _note_pending(self, job: str, folders: set[str]) -> None:
        """Add the ``folders`` (relative to ``root``) not listed yet in this epoch to the job's list, synced
        before any part is written there: one sync per epoch and new folder, not one per write."""
        new = sorted(folders - self._pending_folders)
        if not new:
            return
        pending = self._pending_path(job)
        pending.parent.mkdir(parents=True, exist_ok=True)
        with open(pending, "a") as fh:
            fh.write("".join(f"{folder}\n" for folder in new))
            fh.flush()
            os.fsync(fh.fileno())
        self._pending_folders.update(new)

    # -- compaction ---------------------------------------------------------------------------------

    def compact(
        self, kind: str = "bar", *, before: int | None = None, progress: Callable[[int, int], None] | None = None
    ) -> Compaction:
        """Merge the parts of each folder of ``kind`` whose day ended by ``before`` (ns UTC; default: the start
        of today, UTC) into one file, one row per key by the read rule, so a day a live job wrote in
        thousands of small parts reads as one file. Reads give the same rows before, during and after.

        A folder holding a part of an epoch not committed yet (a job is writing it, or died and has not
        been run again) is left for a later compaction, as is a day written in both layouts
        (``symbol_folders`` true and false), whose files could not be merged without changing which rows
        win. ``progress(done, total)`` is called after each day.
        """
        k = self._writable(kind, "compact")
        if before is None:
            before = time.time_ns() // _DAY_NS * _DAY_NS
        base = self.root / self.tables[k]
        days = sorted(
            d for d in base.glob("date=*") if (_day_number(d.name.removeprefix("date=")) + 1) * _DAY_NS <= before
        )
        shown = self._committed_filter()  # the marks before any listing, as a read takes them
        done = Compaction()
        for number, day in enumerate(days, 1):
            with self._lock, self._translated(f"compact {day}"):
                done = done + self._compact_day(k, day, shown)
            if progress is not None:
                progress(number, len(days))
        return done

    def _compact_day(self, kind: RecordKind, day: Path, shown: Callable[[Path], bool]) -> Compaction:
        symbol_dirs = sorted(day.glob("symbol=*"))
        if symbol_dirs and any(day.glob("part-*.parquet")):
            return Compaction(skipped=1)
        done = Compaction()
        for folder in symbol_dirs or [day]:
            parts = sorted(folder.glob("part-*.parquet"), key=lambda f: f.name)  # by name is by <ns>
            if any(f.name.endswith(_HELD) and not shown(f) for f in parts):
                done = done + Compaction(skipped=1)
                continue
            if len(parts) < 2:
                continue
            merged = dedupe(_in_write_order([str(f) for f in parts]), kind).sort(list(KEYS[kind]))
            # named after the newest part, so every part written later still comes after it
            name = f"part-{max(_part_ns(f.name) for f in parts):020d}-{uuid.uuid4().hex}.parquet"
            tmp = folder / f".{name}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    merged.write_parquet(fh, compression=self.compression, compression_level=self.compression_level)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, folder / name)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _sync_dir(folder)
            for part in parts:  # a read that listed them meanwhile lists again (``_read``)
                part.unlink(missing_ok=True)
            done = done + Compaction(folders=1, parts=len(parts), rows=merged.height)
        return done

    def _translate(self, exc: Exception, step: str) -> StoreError | None:
        message = f"parquet {step} under {self.root} failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, _PERMANENT_OS_ERRORS):
            return PermanentStoreError(message)
        if isinstance(exc, OSError):  # disk full, I/O error, stale network mount: worth another try
            return TransientStoreError(message)
        if isinstance(exc, pl.exceptions.PolarsError):
            return PermanentStoreError(message)
        return None

    # -- helpers ------------------------------------------------------------------------------------

    def _files(self, where: ReadFilter) -> list[str]:
        """The part files that can hold rows ``where`` selects, pruned by date and symbol folders."""
        base = self.root / self.tables[where.kind]
        if not base.is_dir():
            return []
        first = None if where.start is None else where.start // _DAY_NS
        last = None if where.end is None else (where.end - 1) // _DAY_NS
        symbol = None if where.symbol is None else f"symbol={quote(where.symbol, safe='')}"
        # The marks first, then the listing: every part at or below a mark was in place before the mark was
        # written, so the listing holds all of a committed epoch's parts, never some of them.
        shown = self._committed_filter()
        files: list[Path] = []
        for day_dir in base.glob("date=*"):
            day = _day_number(day_dir.name.removeprefix("date="))
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            sym_dirs = [day_dir / symbol] if symbol else day_dir.glob("symbol=*")
            files.extend(itertools.chain.from_iterable(d.glob("part-*.parquet") for d in sym_dirs))
            files.extend(day_dir.glob("part-*.parquet"))  # written with symbol_folders=False
        files = [f for f in files if not f.name.endswith(_HELD) or shown(f)]
        return [str(f) for f in sorted(files, key=lambda f: f.name)]


def _high_water(docs: Iterable[dict[str, Any]]) -> int:
    """The high-water mark of a job's manifests (-1: none). Manifests from before the mark was recorded name
    their parts instead; the newest of those counts."""
    marks = [int(d["high_water"]) if "high_water" in d else max(map(_part_ns, d["files"]), default=-1) for d in docs]
    return max(marks, default=-1)


def _part_ns(name: str) -> int:
    """A part's write order, the ``<ns>`` in its name (a path or a file name)."""
    return int(name.rsplit("/", 1)[-1].split("-", 2)[1])


def _job_tag(job: str) -> str:
    """The tag of ``job``'s checkpointed parts: hex, so part names stay ``part-<ns>-<hex>…`` for any job name."""
    return hashlib.blake2s(job.encode(), digest_size=6).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees all of it or the old file (synced, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    """Make the renames into ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _in_write_order(files: list[str], where: pl.Expr | None = None) -> pl.DataFrame:
    """The rows of ``files`` (those ``where`` selects), the files' in write order (their ``<ns>``), so
    ``dedupe`` keeps the first of equal versions."""
    scan = pl.scan_parquet(files, hive_partitioning=False, include_file_paths="_file")
    if where is not None:
        scan = scan.filter(where)
    return (
        scan.with_columns(pl.col("_file").str.extract(_PART_NS).cast(pl.Int64))
        .sort("_file", maintain_order=True)
        .collect()
        .drop("_file")
    )


def _day_name(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).isoformat()


def _day_number(name: str) -> int:
    try:
        return (datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC).date() - _EPOCH).days
    except ValueError:
        raise PermanentStoreError(f"a parquet partition folder should be date=YYYY-MM-DD, found date={name}") from None
