"""One live feed per watched job: its status from the job registry and its new bars from its store.

The job process is left alone: a feed reads what the job already publishes, the registry row its
heartbeat updates every second and the bars its store sink commits (a SQLite file in WAL mode serves
readers while the job writes). One feed serves every WebSocket watching that job, so twenty browsers
cost one registry read and one store read per poll, and each message is encoded once.

Bars are read from a window at the head of the store: every bar whose start is at most
``revision_bars`` bar lengths before the newest start seen. A bar in that window whose values or
revision changed since the last read is sent again (the chart replaces it); a revision of an older bar
is not sent live (the REST endpoint has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl

from mdp.app.jobs import JobRecord, JobStore
from mdp.durations import parse_duration
from mdp.errors import ConfigError, MdpError
from mdp.stores.base import Store
from mdp.stores.registry import open_store

log = logging.getLogger("mdp.web")

#: what a bar message carries per bar (``t``: the bar's start in ms since the epoch, for the chart)
BAR_FIELDS: Final = ("symbol", "timeframe", "start", "open", "high", "low", "close", "volume", "revision")
#: messages a slow WebSocket may have queued before it is dropped (it reconnects and starts afresh)
QUEUE_LIMIT: Final = 256


def bar_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The bars of ``frame`` as JSON-ready dicts (``t`` in ms for the chart)."""
    cols = [c for c in BAR_FIELDS if c in frame.columns]
    rows = frame.select(cols).to_dicts()
    for row in rows:
        row["t"] = row["start"] // 1_000_000
    return rows


def bar_store(record: JobRecord) -> Store | None:
    """A read-only store over the bars ``record``'s job writes (its first bar sink), or None."""
    graph = record.counters.get("graph") or {}
    for sink in graph.get("stores", []):
        if sink.get("kind") != "bar":
            continue
        spec = dict(sink.get("spec") or {})
        spec.pop("busy_timeout", None)
        try:
            return open_store(str(sink["backend"]), **spec, read_only=True)
        except (MdpError, TypeError) as exc:
            log.warning("job %s: cannot read its store %s: %s", record.name, sink.get("backend"), exc)
    return None


@dataclass(eq=False)
class Subscriber:
    """One WebSocket's queue of encoded messages, and the symbols it wants bars of (empty: all)."""

    symbols: set[str] = field(default_factory=set)
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))

    def offer(self, message: str) -> bool:
        """Queue ``message``; False when the queue is full (the subscriber is too slow and is dropped)."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True


class JobFeed:
    """Polls one job's registry row and store; sends status and bar changes to its subscribers.

    Args:
        registry: the job registry.
        job: the job name.
        interval: seconds between two reads of the store.
        status_interval: seconds between two reads of the job registry.
        revision_bars: how many bar lengths behind the newest bar a revision is still sent live.
    """

    def __init__(
        self,
        registry: JobStore,
        job: str,
        *,
        interval: float = 0.1,
        status_interval: float = 0.5,
        revision_bars: int = 2,
    ) -> None:
        self.registry = registry
        self.status_interval = status_interval
        self.job = job
        self.interval = interval
        self.revision_bars = revision_bars
        self.subscribers: set[Subscriber] = set()
        #: the bars of the last read (the window at the head of the store)
        self._window: pl.DataFrame | None = None
        self.status: dict[str, Any] | None = None
        self._status_text: str | None = None
        self._store: Store | None = None
        self._store_open = False
        self._newest: int | None = None  # the newest bar start seen
        self._length: int | None = None  # the shortest bar length seen (ns)
        self._status_due = 0.0
        self._record: JobRecord | None = None
        self._mark: tuple[int, ...] | None = None
        self._run_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0

    # -- subscribers --------------------------------------------------------------------------------

    def subscribe(self, symbols: set[str] | None = None) -> Subscriber:
        """A new subscriber, given the current status and the bars of the window at once; starts polling."""
        sub = Subscriber(set(symbols or ()))
        if self._status_text is not None:
            sub.offer(self._status_text)
        window = self._window
        if window is not None and sub.symbols:
            window = window.filter(pl.col("symbol").is_in(sorted(sub.symbols)))
        if window is not None and window.height:
            sub.offer(json.dumps({"type": "bars", "bars": bar_rows(window.sort("symbol", "start"))}))
        self.subscribers.add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"feed {self.job}")
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._close_store)
        for sub in list(self.subscribers):
            self._end(sub)

    # -- polling ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.subscribers:
                began = time.monotonic()
                try:
                    await self.poll()
                except Exception:  # a failed poll (store busy, registry locked) is retried next time
                    log.exception("job %s: poll failed", self.job)
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))
        finally:
            await asyncio.to_thread(self._close_store)

    async def poll(self) -> None:
        """One round: the registry row (status), then the bars window (changed bars only)."""
        self.polls += 1
        status, changed = await asyncio.to_thread(self._read)
        read_at = round(time.time(), 4)  # wall time the bars were read: clients can tell our delay from theirs
        if status is not None:
            self._status_text = json.dumps({"type": "status", "job": status})
            self.status = status
            for sub in list(self.subscribers):
                self._send(sub, self._status_text)
        if changed:
            symbols = {b["symbol"] for b in changed}
            everything = json.dumps({"type": "bars", "read_at": read_at, "bars": changed})
            for sub in list(self.subscribers):
                if not sub.symbols:
                    self._send(sub, everything)
                elif sub.symbols & symbols:
                    mine = [b for b in changed if b["symbol"] in sub.symbols]
                    self._send(sub, json.dumps({"type": "bars", "read_at": read_at, "bars": mine}))

    def _send(self, sub: Subscriber, message: str) -> None:
        if not sub.offer(message):
            log.warning("job %s: a WebSocket fell %d messages behind; dropping it", self.job, QUEUE_LIMIT)
            self._end(sub)

    def _end(self, sub: Subscriber) -> None:
        """Drop ``sub`` and wake its writer with the end marker (None), making room for it if need be."""
        self.subscribers.discard(sub)
        with contextlib.suppress(asyncio.QueueEmpty):
            if sub.queue.full():
                sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    def _read(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """In a worker thread: the job's newest record (if it changed, read at most every
        ``status_interval``: the job writes it once a second) and the bars that changed."""
        status = None
        now = time.monotonic()
        if now >= self._status_due or self._record is None:
            self._status_due = now + self.status_interval
            record = self._record = self.registry.get(self.job)
            data = record.to_dict()
            status = data if data != self.status else None
        record = self._record
        if record.run_id != self._run_id:  # a new run (perhaps another store): start afresh
            self._close_store()
            self._run_id, self._window, self._newest, self._length = record.run_id, None, None, None
            self._mark = None
        if self._store is None:
            self._store = bar_store(record)
            if self._store is None:
                return status, []
        mark = _file_mark(self._store)
        if mark is not None and mark == self._mark:  # nothing committed since the last read
            return status, []
        changed = self._changed_bars(self._store)
        self._mark = mark
        return status, changed

    def _changed_bars(self, store: Store) -> list[dict[str, Any]]:
        cutoff = None
        if self._newest is not None and self._length is not None:
            cutoff = self._newest - self.revision_bars * self._length
        try:
            if not self._store_open:
                store.open()
                self._store_open = True
            frame = store.read("bar", None, None, cutoff, None)
        except MdpError as exc:  # the table is not there yet (the job has written nothing): try again later
            log.debug("job %s: no bars yet: %s", self.job, exc)
            self._close_store()
            return []
        frame = frame.select([c for c in BAR_FIELDS if c in frame.columns])
        # new or changed bars: those with no identical row in the last read (a join in polars, not a loop)
        fresh = frame if self._window is None else frame.join(self._window, on=frame.columns, how="anti")
        self._window = frame
        if frame.height:
            self._newest = int(frame["start"].max())  # type: ignore[arg-type]
            self._length = min(_timeframe_ns(tf) for tf in frame["timeframe"].unique().to_list())
        return bar_rows(fresh.sort("symbol", "start"))

    def _close_store(self) -> None:
        store, self._store = self._store, None
        was_open, self._store_open = self._store_open, False
        if store is not None and was_open:
            with contextlib.suppress(MdpError):
                store.close()


def _file_mark(store: Store) -> tuple[int, ...] | None:
    """Size and mtime of a file store and its WAL: unchanged means nothing was committed since (None: can't
    tell, as for a server or a folder, so read every time)."""
    path = store.spec().get("path")
    if not isinstance(path, str) or store.backend not in ("sqlite", "duckdb"):
        return None
    mark: list[int] = []
    for name in (path, f"{path}-wal", f"{path}.wal"):
        try:
            st = os.stat(name)
        except OSError:
            mark += [-1, -1]
        else:
            mark += [st.st_size, st.st_mtime_ns]
    return tuple(mark)


@functools.lru_cache(maxsize=64)
def _timeframe_ns(timeframe: str) -> int:
    try:
        return parse_duration(timeframe)
    except (ConfigError, ValueError):
        return 60_000_000_000
