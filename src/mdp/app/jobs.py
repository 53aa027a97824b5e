"""The local job registry behind ``mdp list``, ``mdp status`` and ``mdp stop``.

Every ``mdp run`` records its job in a small SQLite database (WAL mode, so any process can read while
jobs write): name, state, pid, host, config path, a heartbeat and the live counters, then the final
state (``finished``, ``stopped`` or ``failed`` with the error). A run whose process died without saying
so is reported as ``lost``: at once when its pid is gone on this host, else when its heartbeat is older
than ``lost_after`` seconds.

The database lives in ``$MDP_HOME`` (default ``$XDG_STATE_HOME/mdp``, else ``~/.local/state/mdp``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from mdp.clock import Clock, SystemClock
from mdp.durations import format_time
from mdp.errors import ConfigError, MdpError

#: seconds between two heartbeats of a running job
HEARTBEAT_SECONDS: Final[float] = 1.0
#: a running job whose heartbeat is this old is reported as lost
LOST_AFTER_SECONDS: Final[float] = 15.0
LIVE_STATES: Final[frozenset[str]] = frozenset({"running", "stopping"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    state        TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    config_path  TEXT,
    mode         TEXT,
    started_ns   INTEGER NOT NULL,
    heartbeat_ns INTEGER NOT NULL,
    ended_ns     INTEGER,
    counters     TEXT NOT NULL DEFAULT '{}',
    error        TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_name ON runs (name, run_id);
"""


def state_dir() -> Path:
    """Where the job database lives: ``$MDP_HOME``, else the per-user state directory."""
    if os.environ.get("MDP_HOME"):
        return Path(os.environ["MDP_HOME"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mdp"


@dataclass
class JobRecord:
    """One run of a job as the registry knows it; ``state`` already says ``lost`` when it is."""

    run_id: int
    name: str
    state: str
    pid: int
    host: str
    config_path: str | None
    mode: str | None
    started_ns: int
    heartbeat_ns: int
    ended_ns: int | None
    counters: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started_ns", "heartbeat_ns", "ended_ns"):
            value = data[key]
            data[key.replace("_ns", "_at")] = format_time(value) if value is not None else None
        return data


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        return True
    return True


class JobStore:
    """Read and write the job registry.

    Args:
        path: the database file (default ``state_dir() / "jobs.sqlite"``).
        clock: wall clock for heartbeats (tests pass a ``ManualClock``).
        lost_after: seconds without a heartbeat after which a running job counts as lost.
    """

    def __init__(self, path: Path | None = None, *, clock: Clock | None = None, lost_after: float = LOST_AFTER_SECONDS):
        self.path = path or state_dir() / "jobs.sqlite"
        self.clock = clock or SystemClock()
        self.lost_after_ns = int(lost_after * 1e9)
        self.host = socket.gethostname()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise MdpError(
                f"cannot open the job registry at {self.path}: {exc}; set MDP_HOME to a writable folder"
            ) from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=10.0)
        conn.row_factory = sqlite3.Row
        # WAL without a sync per commit: the registry survives a crash intact, and a run's start,
        # heartbeats and end cost no disk flush (a power cut may lose the newest heartbeat)
        conn.execute("PRAGMA synchronous=NORMAL")
        try:
            with conn:
                yield conn
        finally:
            conn.close()

    # -- the running job's side ---------------------------------------------------------------------

    def start(
        self, name: str, *, config_path: str | None = None, mode: str | None = None, pid: int | None = None
    ) -> int:
        """Record a new run of ``name`` as running; return its run id.

        Raises:
            ConfigError: a run of ``name`` is still alive (stop it, or pick another name).
        """
        current = self.latest(name)
        if current is not None and current.live:
            raise ConfigError(
                f"job {name!r} is already running (pid {current.pid} on {current.host}); "
                f"stop it with 'mdp stop --job {name}' or run under another name with --job"
            )
        now = self.clock.now_ns()
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO runs (name, state, pid, host, config_path, mode, started_ns, heartbeat_ns)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
                (name, pid if pid is not None else os.getpid(), self.host, config_path, mode, now, now),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def heartbeat(self, run_id: int, counters: dict[str, Any]) -> None:
        """Say the run is alive and store its live counters."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE runs SET heartbeat_ns = ?, counters = ? WHERE run_id = ?",
                (self.clock.now_ns(), json.dumps(counters), run_id),
            )

    def finish(self, run_id: int, state: str, counters: dict[str, Any], error: str | None = None) -> None:
        """Record the end of a run: ``finished``, ``stopped`` or ``failed``."""
        now = self.clock.now_ns()
        with self._connect() as conn:
            conn.execute(
                "UPDATE runs SET state = ?, heartbeat_ns = ?, ended_ns = ?, counters = ?, error = ? WHERE run_id = ?",
                (state, now, now, json.dumps(counters), error, run_id),
            )

    # -- everyone else's side -----------------------------------------------------------------------

    def latest(self, name: str) -> JobRecord | None:
        """The newest run of ``name``, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE name = ? ORDER BY run_id DESC LIMIT 1", (name,)).fetchone()
        return self._record(row) if row is not None else None

    def jobs(self) -> list[JobRecord]:
        """The newest run of every job, most recently started first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM runs WHERE run_id IN (SELECT max(run_id) FROM runs GROUP BY name) ORDER BY run_id DESC"
            ).fetchall()
        return [self._record(r) for r in rows]

    def get(self, name: str) -> JobRecord:
        """The newest run of ``name``.

        Raises:
            ConfigError: no job has that name; the message lists the known ones.
        """
        record = self.latest(name)
        if record is None:
            known = ", ".join(r.name for r in self.jobs()) or "none yet"
            raise ConfigError(f"no job named {name!r} in {self.path} (known jobs: {known})")
        return record

    def request_stop(self, name: str) -> JobRecord:
        """Send SIGTERM to the live run of ``name`` so it drains and flushes; mark it ``stopping``.

        Raises:
            MdpError: the job is not running, or runs on another host.
        """
        record = self.get(name)
        if not record.live:
            raise MdpError(f"job {name!r} is not running (its last run is {record.state})")
        if record.host != self.host:
            raise MdpError(f"job {name!r} runs on {record.host}, not here ({self.host}); stop it there")
        try:
            os.kill(record.pid, signal.SIGTERM)
        except ProcessLookupError:
            raise MdpError(f"job {name!r} (pid {record.pid}) is gone: it is lost, not running") from None
        with self._connect() as conn:
            conn.execute("UPDATE runs SET state = 'stopping' WHERE run_id = ? AND state = 'running'", (record.run_id,))
        return self.get(name)

    def _record(self, row: sqlite3.Row) -> JobRecord:
        record = JobRecord(
            run_id=row["run_id"],
            name=row["name"],
            state=row["state"],
            pid=row["pid"],
            host=row["host"],
            config_path=row["config_path"],
            mode=row["mode"],
            started_ns=row["started_ns"],
            heartbeat_ns=row["heartbeat_ns"],
            ended_ns=row["ended_ns"],
            counters=json.loads(row["counters"] or "{}"),
            error=row["error"],
        )
        if record.live:
            silent_ns = self.clock.now_ns() - record.heartbeat_ns
            if silent_ns > self.lost_after_ns or (record.host == self.host and not pid_alive(record.pid)):
                record.state = "lost"
        return record


async def heartbeat_loop(store: JobStore, run_id: int, snapshot: Callable[[], Any]) -> None:
    """Until cancelled: every ``HEARTBEAT_SECONDS`` store ``snapshot().to_dict()`` as the run's counters."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        summary = snapshot()
        if summary is not None:
            await asyncio.to_thread(store.heartbeat, run_id, summary.to_dict())


def _elapsed(record: JobRecord) -> float:
    return ((record.ended_ns or record.heartbeat_ns) - record.started_ns) / 1e9


def render_jobs(records: list[JobRecord]) -> str:
    """The ``mdp list`` table: one line per job (its newest run)."""
    if not records:
        return "no jobs yet (mdp run records them here)"
    header: tuple[str, ...] = ("JOB", "STATE", "PID", "STARTED", "ROWS IN", "BARS OUT", "LATE", "SECONDS", "CONFIG")
    rows: list[tuple[str, ...]] = [header]
    for r in records:
        c = r.counters
        rows.append(
            (
                r.name,
                r.state,
                str(r.pid),
                format_time(r.started_ns - r.started_ns % 1_000_000_000),
                f"{c.get('rows_in', 0):,}",
                f"{c.get('bars_out', 0):,}",
                f"{c.get('late_rows', 0):,}",
                f"{_elapsed(r):.1f}",
                r.config_path or "",
            )
        )
    if any("partitions" in r.counters for r in records):  # workers of a worker job: which partitions each owns
        rows = [(*rows[0], "PARTITIONS")] + [
            (*row, _partitions(r.counters.get("partitions"))) for row, r in zip(rows[1:], records, strict=True)
        ]
        header = rows[0]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def render_status(r: JobRecord) -> str:
    """The ``mdp status`` text: every field of the newest run, counters last."""
    lines = [
        f"job        {r.name}",
        f"state      {r.state}",
        f"pid        {r.pid} on {r.host}",
        f"config     {r.config_path or '-'} ({r.mode or '-'} mode)",
        f"started    {format_time(r.started_ns)}",
        f"heartbeat  {format_time(r.heartbeat_ns)}",
        f"ended      {format_time(r.ended_ns) if r.ended_ns else '-'}",
        f"seconds    {_elapsed(r):.1f}",
    ]
    if r.error:
        lines.append(f"error      {r.error}")
    labels = {"rows_in": "rows in", "rows_per_second": "rows/s", "bars_out": "bars out", "late_rows": "late rows"}
    for key, label in {**labels, "rows_written": "written"}.items():
        value = r.counters.get(key)
        if isinstance(value, int | float):
            lines.append(f"{label:<10} {value:,.0f}")
    lines += [f"written to {loc}" for loc in r.counters.get("locations", [])]
    if "partitions" in r.counters:  # a worker of a worker job (mdp.app.workers)
        c = r.counters
        lines.append(f"worker     {c.get('worker', '-')} in group {c.get('group', '-')}")
        lines.append(f"partitions {_partitions(c.get('partitions'))}")
        owners = c.get("owners") or {}
        by_worker: dict[str, list[int]] = {}
        for k, w in owners.items():
            by_worker.setdefault(str(w), []).append(int(k))
        lines += [f"owners     {w}: {_partitions(ks)}" for w, ks in sorted(by_worker.items())]
        lag_m, lag_s = c.get("lag_messages") or {}, c.get("lag_seconds") or {}
        if lag_m:
            lines.append(
                "lag        "
                + ", ".join(f"p{k} {lag_m[k]} msgs {lag_s.get(k, 0):.1f}s" for k in sorted(lag_m, key=int))
            )
    return "\n".join(lines)


def _partitions(parts: object) -> str:
    """``0,3,7`` (``-``: none)."""
    if not isinstance(parts, list) or not parts:
        return "-"
    return ",".join(str(int(k)) for k in sorted(parts))
