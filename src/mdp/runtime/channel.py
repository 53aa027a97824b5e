"""``Channel[T]``: the bounded queue on every edge of a graph.

Semantics follow Trio's memory channels: full means ``put`` waits (nothing is ever dropped), ``get`` raises
:class:`~mdp.errors.ChannelClosed` once the channel is closed *and* drained, closing wakes every waiter,
and a ``put`` after the receiver went away raises :class:`~mdp.errors.ChannelBroken` instead of hanging.

Capacity is counted in messages and, for frames, also in rows: a channel of 2,048 frames of 64k rows
would otherwise hold a whole file. A message that alone exceeds the row bound still passes when the
channel is empty, so one large frame cannot deadlock a graph.

High/low watermark callbacks fire once per crossing (high when the fill level reaches ``high``, low when
it falls back to ``low``), so a source or rate limiter can slow down and speed up again. Callbacks run
synchronously and must be quick; a callback that returns a coroutine is scheduled as a task. They are
best-effort, as the seed says: a callback that raises (or whose task fails) is logged and counted in
``statistics().callback_errors``, and the ``put`` or ``get`` that crossed the mark completes all the same
(its item is queued or returned once; a retry would otherwise queue it twice).

``policy="block"`` (the default) makes a full channel wait. ``policy="conflate"`` is for streams where
only the newest value per key matters (quotes): a put into a full channel replaces the queued message
with the same key (or, for frames, folds into the last queued frame keeping the last row per key column)
and counts what it replaced in ``statistics().conflated``; when nothing can absorb it, the put waits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import polars as pl

from mdp.errors import ChannelBroken, ChannelClosed, MdpError
from mdp.records import Watermark as EventWatermark
from mdp.runtime.checkpoints import Barrier

T = TypeVar("T")
Callback = Callable[[], Any]

_DataFrame = pl.DataFrame
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Watermark:
    """Fill thresholds of a channel, in messages of its ``capacity`` (the seed's ``Watermark(high, low)``).

    Not to be confused with :class:`mdp.records.Watermark`, the in-band event-time marker.
    """

    high: int
    low: int

    def __post_init__(self) -> None:
        if not 0 <= self.low < self.high:
            raise MdpError(f"channel watermark needs 0 <= low < high, got low={self.low} high={self.high}")


ChannelWatermark = Watermark


@dataclass(frozen=True, slots=True)
class ChannelStatistics:
    """A snapshot of one channel's counters (feeds the run summary and the metrics)."""

    name: str
    capacity: int
    capacity_rows: int | None
    depth: int
    depth_rows: int
    max_depth: int
    puts: int
    gets: int
    rows_put: int
    rows_got: int
    blocked_puts: int
    blocked_seconds: float
    high_crossings: int
    low_crossings: int
    above_high: bool
    closed: bool
    conflated: int = 0
    #: high/low watermark callbacks that raised (logged; the put or get went on)
    callback_errors: int = 0


class _Done:
    """What ``close()`` returns: nothing to wait for, but ``await ch.close()`` (the seed's style) works."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()


class Channel(Generic[T]):
    """A bounded FIFO between one producer node and one consumer node.

    Args:
        capacity: most messages held at once.
        watermark: fill thresholds in messages; defaults to 75% / 25% of ``capacity``.
        on_high: called once each time the fill level rises to ``watermark.high``.
        on_low: called once each time the fill level, having been high, falls to ``watermark.low``.
        capacity_rows: most frame rows held at once (None: no row bound).
        name: shown in statistics and errors, ``"src->dst"`` for graph edges.
    """

    __slots__ = (
        "_above",
        "_blocked_ns",
        "_blocked_puts",
        "_callback_errors",
        "_cap",
        "_cap_rows",
        "_closed",
        "_conflate",
        "_conflated",
        "_gets",
        "_getters",
        "_high",
        "_high_crossings",
        "_high_rows",
        "_items",
        "_key",
        "_low",
        "_low_crossings",
        "_low_rows",
        "_max_depth",
        "_puts",
        "_putters",
        "_receiver_gone",
        "_rows",
        "_rows_got",
        "_rows_put",
        "_tasks",
        "_woken",
        "name",
        "on_high",
        "on_low",
    )

    def __init__(
        self,
        capacity: int = 2048,
        watermark: Watermark | None = None,
        on_high: Callback | None = None,
        on_low: Callback | None = None,
        *,
        capacity_rows: int | None = None,
        name: str = "channel",
        policy: Literal["block", "conflate"] = "block",
        key: str | Callable[[Any], Any] | None = None,
    ) -> None:
        if capacity < 1:
            raise MdpError(f"channel {name!r}: capacity must be at least 1, got {capacity}")
        if capacity_rows is not None and capacity_rows < 1:
            raise MdpError(f"channel {name!r}: capacity_rows must be at least 1, got {capacity_rows}")
        wm = watermark or Watermark(high=max(1, (capacity * 3) // 4), low=capacity // 4)
        if wm.high > capacity:
            raise MdpError(f"channel {name!r}: watermark high={wm.high} exceeds capacity={capacity}")
        self.name = name
        self.on_high = on_high
        self.on_low = on_low
        self._cap = capacity
        self._cap_rows = capacity_rows
        self._high = wm.high
        self._low = wm.low
        # the same fractions applied to the row bound
        self._high_rows = (capacity_rows * wm.high) // capacity if capacity_rows else 0
        self._low_rows = (capacity_rows * wm.low) // capacity if capacity_rows else 0
        self._items: collections.deque[T] = collections.deque()
        self._rows = 0
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._putters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._receiver_gone = False
        self._above = False
        self._puts = self._gets = self._rows_put = self._rows_got = 0
        self._max_depth = 0
        self._blocked_puts = 0
        self._blocked_ns = 0
        self._high_crossings = self._low_crossings = 0
        self._callback_errors = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        if policy not in ("block", "conflate"):
            raise MdpError(f"channel {name!r}: policy must be 'block' or 'conflate', got {policy!r}")
        if policy == "conflate" and key is None:
            raise MdpError(f"channel {name!r}: the conflate policy needs key= (a column name or a function)")
        self._conflate = policy == "conflate"
        self._key = key
        self._conflated = 0
        self._woken = 0  # puts woken for room that have not run yet (no other put may barge in)

    # -- sending -------------------------------------------------------------------------------------

    async def put(self, item: T) -> None:
        """Append ``item``, waiting while the channel is full.

        Raises:
            ChannelClosed: the channel was closed (also when closed while this put waited).
            ChannelBroken: the receiving node has finished.
        """
        rows = item.height if type(item) is _DataFrame else 0  # type: ignore[attr-defined]
        if self._closed:
            self._raise_closed()
        if self._putters or self._woken or self._is_full(rows):
            if self._conflate and self._conflate_into_queue(item):
                return
            await self._wait_for_room(rows)
        self._append(item, rows)

    def put_nowait(self, item: T) -> bool:
        """Append ``item`` if there is room now; return False (and keep nothing) if the channel is full."""
        rows = item.height if type(item) is _DataFrame else 0  # type: ignore[attr-defined]
        if self._closed:
            self._raise_closed()
        if self._putters or self._woken or self._is_full(rows):
            return bool(self._conflate and self._conflate_into_queue(item))
        self._append(item, rows)
        return True

    def _conflate_into_queue(self, item: T) -> bool:
        """Full channel, conflate policy: fold ``item`` into what is queued, keeping the newest per key.

        Only messages after the last queued event-time watermark are touched, so conflation never moves
        data across a watermark. Returns False when nothing could absorb the item (the put then waits).
        """
        items = self._items
        if not items:
            return False
        last = items[-1]
        if type(item) is _DataFrame:
            if type(last) is not _DataFrame or not isinstance(self._key, str):
                return False
            old: pl.DataFrame = last  # type: ignore[assignment]
            new: pl.DataFrame = item  # type: ignore[assignment]
            merged = pl.concat([old, new], how="vertical_relaxed").unique(
                subset=[self._key], keep="last", maintain_order=True
            )
            items[-1] = merged  # type: ignore[assignment]
            self._rows += merged.height - old.height
            self._conflated += old.height + new.height - merged.height
            self._puts += 1
            return True
        if type(item) is EventWatermark or type(item) is Barrier:
            return False
        key_fn = self._key if callable(self._key) else (lambda x: x[self._key])
        wanted = key_fn(item)
        for i in range(len(items) - 1, -1, -1):
            queued = items[i]
            if type(queued) is EventWatermark or type(queued) is _DataFrame or type(queued) is Barrier:
                return False
            if key_fn(queued) == wanted:
                items[i] = item  # the newest value takes the older one's place in line
                self._conflated += 1
                self._puts += 1
                return True
        return False

    def _is_full(self, rows: int) -> bool:
        if len(self._items) >= self._cap:
            return True
        cap_rows = self._cap_rows
        return cap_rows is not None and self._rows > 0 and self._rows + rows > cap_rows

    async def _wait_for_room(self, rows: int) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter_ns()
        self._blocked_puts += 1
        first_wait = True
        try:
            while True:
                fut: asyncio.Future[None] = loop.create_future()
                if first_wait:
                    self._putters.append(fut)
                else:  # woken but our message still does not fit: keep our place at the head of the line
                    self._putters.appendleft(fut)
                first_wait = False
                try:
                    await fut
                except BaseException:
                    if fut.done() and not fut.cancelled():
                        self._woken -= 1  # woken, then cancelled before running: pass the wake-up on
                        if not self._closed and not self._is_full(0):
                            self._wake_putter()
                    else:
                        fut.cancel()
                        try:
                            self._putters.remove(fut)
                        except ValueError:
                            pass
                    raise
                self._woken -= 1
                if self._closed:
                    self._raise_closed()
                if not self._is_full(rows):
                    break
        finally:
            self._blocked_ns += time.perf_counter_ns() - started

    def _wake_putter(self) -> None:
        """Wake the first waiting put; until it runs, no new put may take the room it was woken for."""
        putters = self._putters
        while putters:
            fut = putters.popleft()
            if not fut.done():
                fut.set_result(None)
                self._woken += 1
                return

    def _append(self, item: T, rows: int) -> None:
        items = self._items
        items.append(item)
        self._rows += rows
        self._puts += 1
        self._rows_put += rows
        depth = len(items)
        if depth > self._max_depth:
            self._max_depth = depth
        if self._getters:
            self._wake(self._getters)
        if not self._above and (depth >= self._high or (self._cap_rows and self._rows >= self._high_rows)):
            self._above = True
            self._high_crossings += 1
            self._fire(self.on_high)
        if self._putters and not self._is_full(0):
            self._wake_putter()

    # -- receiving -----------------------------------------------------------------------------------

    async def get(self) -> T:
        """Remove and return the oldest message, waiting while the channel is empty.

        Raises:
            ChannelClosed: the channel is closed and every message has been taken.
        """
        items = self._items
        while not items:
            if self._closed:
                raise ChannelClosed(f"channel {self.name!r} is closed and drained")
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(fut)
            try:
                await fut
            except BaseException:
                fut.cancel()
                try:
                    self._getters.remove(fut)
                except ValueError:
                    pass
                if items:
                    self._wake(self._getters)
                raise
        return self._pop()

    def get_nowait(self) -> T:
        """Return the oldest message now.

        Raises:
            ChannelClosed: the channel is closed and drained.
            asyncio.QueueEmpty: nothing is waiting but the channel is still open.
        """
        if not self._items:
            if self._closed:
                raise ChannelClosed(f"channel {self.name!r} is closed and drained")
            raise asyncio.QueueEmpty
        return self._pop()

    def _pop(self) -> T:
        item = self._items.popleft()
        rows = item.height if type(item) is _DataFrame else 0  # type: ignore[attr-defined]
        self._rows -= rows
        self._gets += 1
        self._rows_got += rows
        if self._putters and not self._woken:
            self._wake_putter()
        if self._above and len(self._items) <= self._low and (not self._cap_rows or self._rows <= self._low_rows):
            self._above = False
            self._low_crossings += 1
            self._fire(self.on_low)
        return item

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except ChannelClosed:
            raise StopAsyncIteration from None

    # -- closing -------------------------------------------------------------------------------------

    def close(self) -> Awaitable[None]:
        """Close for sending: waiters wake, ``get`` drains what is queued then raises ``ChannelClosed``.

        Idempotent. Returns an awaitable, so both ``ch.close()`` and the seed's ``await ch.close()`` work.
        """
        if not self._closed:
            self._closed = True
            while self._getters:
                self._wake(self._getters)
            while self._putters:
                self._wake_putter()
        return _DONE

    def close_receiver(self) -> None:
        """Mark the receiving side as gone: queued messages are dropped and further puts raise."""
        self._receiver_gone = True
        self._items.clear()
        self._rows = 0
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close`` was called (messages may still be queued)."""
        return self._closed

    def _raise_closed(self) -> None:
        if self._receiver_gone:
            raise ChannelBroken(f"channel {self.name!r}: the receiving node has finished")
        raise ChannelClosed(f"channel {self.name!r} is closed; nothing more can be put")

    # -- state ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def capacity(self) -> int:
        return self._cap

    @property
    def capacity_rows(self) -> int | None:
        return self._cap_rows

    @property
    def depth_rows(self) -> int:
        return self._rows

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return self._is_full(0)

    def statistics(self) -> ChannelStatistics:
        """Return a snapshot of this channel's counters."""
        return ChannelStatistics(
            name=self.name,
            capacity=self._cap,
            capacity_rows=self._cap_rows,
            depth=len(self._items),
            depth_rows=self._rows,
            max_depth=self._max_depth,
            puts=self._puts,
            gets=self._gets,
            rows_put=self._rows_put,
            rows_got=self._rows_got,
            blocked_puts=self._blocked_puts,
            blocked_seconds=self._blocked_ns / 1e9,
            high_crossings=self._high_crossings,
            low_crossings=self._low_crossings,
            above_high=self._above,
            closed=self._closed,
            conflated=self._conflated,
            callback_errors=self._callback_errors,
        )

    @staticmethod
    def _wake(waiters: collections.deque[asyncio.Future[None]]) -> None:
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _fire(self, callback: Callback | None) -> None:
        """Call a watermark callback, best-effort: its error is logged and counted, never raised here."""
        if callback is None:
            return
        try:
            result = callback()
            if asyncio.iscoroutine(result):
                task = asyncio.get_running_loop().create_task(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)
        except Exception as exc:
            self._callback_failed(callback, exc)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._callback_failed(task.get_coro(), exc)

    def _callback_failed(self, callback: object, exc: BaseException) -> None:
        self._callback_errors += 1
        name = getattr(callback, "__qualname__", None) or repr(callback)
        _log.error(
            "channel %r: watermark callback %s raised %s: %s (ignored: callbacks are best-effort)",
            self.name,
            name,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
