"""How a source meters rows out: frames of at most N rows, read ahead on a thread, paced by event time.

``cut_frames`` turns whatever block sizes a reader or generator produces into frames of exactly
``frame_rows`` rows (the last may be shorter), so what flows downstream does not depend on the file's
row groups or the CSV block size. ``in_thread`` runs a blocking frame iterator one step ahead on a
worker thread, so decompression and parsing (which release the GIL) overlap with the graph.
``Pacer`` holds a replay to a speed factor of event time on the runtime's clock: a row with event time
``t`` is sent no earlier than ``start + (t - first_t) / speed``, in slices of at most ``slice_ns`` of
wall time so the stream is smooth rather than one burst per frame. ``rate_limiter`` gives a source the
adaptive limit of :mod:`mdp.runtime.pressure`, which ``emit_paced`` applies only while there is
pressure below the source.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final, TypeVar

import numpy as np
import polars as pl

from mdp.clock import Clock
from mdp.runtime.operator import Context
from mdp.runtime.pressure import AdaptiveRate
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks

#: wall time covered by one paced slice: short enough to look continuous, long enough to batch
DEFAULT_SLICE_NS: Final[int] = 10_000_000
#: longest single sleep, so a paced source notices ``ctx.stopping`` promptly across gaps in the data
MAX_SLEEP_NS: Final[int] = 100_000_000

_T = TypeVar("_T")


def cut_frames(blocks: Iterable[pl.DataFrame | _T], frame_rows: int, done: int = 0) -> Iterator[pl.DataFrame | _T]:
    """Re-cut ``blocks`` into frames of ``frame_rows`` rows; only the last frame may be shorter.

    Anything in ``blocks`` that is not a frame (a source's dead letters) is passed on at once, ahead of
    the rows still held: it travels on another port, so only the order of the frames matters.
    ``done`` is how many rows went out before (a resumed source): the first frame is short by
    ``done % frame_rows`` rows, so every frame ends where it would have in one uninterrupted run.
    """
    held: list[pl.DataFrame] = []
    held_rows = 0
    size = frame_rows - done % frame_rows  # rows of the frame being filled
    for block in blocks:
        if not isinstance(block, pl.DataFrame):
            yield block
            continue
        if block.height == 0:
            continue
        held.append(block)
        held_rows += block.height
        if held_rows < size:
            continue
        joined = pl.concat(held, rechunk=False) if len(held) > 1 else held[0]
        start = 0
        while held_rows - start >= size:
            yield joined.slice(start, size)
            start += size
            size = frame_rows
        held = [joined.slice(start)] if start < held_rows else []
        held_rows -= start
    if held_rows:
        yield pl.concat(held, rechunk=False) if len(held) > 1 else held[0]


async def in_thread(frames: Iterator[_T]) -> AsyncGenerator[_T, None]:
    """Iterate ``frames`` on a worker thread, fetching the next frame while the caller sends this one.

    Close it with ``contextlib.aclosing``: on exit it waits for the step in flight, then closes
    ``frames`` so files are released even when the caller stops early.
    """
    pending = asyncio.ensure_future(asyncio.to_thread(next, frames, None))
    try:
        while True:
            frame = await pending
            if frame is None:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next, frames, None))
            yield frame
    finally:
        if not pending.done():
            with contextlib.suppress(Exception):  # the caller is leaving already; its own error wins
                await asyncio.shield(pending)  # a thread cannot be cancelled: let its step finish
        frames_close = getattr(frames, "close", None)
        if frames_close is not None:
            frames_close()


class Pacer:
    """Map event time to the wall time at which a row may be sent, at ``speed`` times real time.

    Args:
        clock: the runtime's processing-time clock (tests pass a ``ManualClock``).
        speed: event-time seconds per wall second (1.0 real time, 10.0 ten times faster).
        slice_ns: most wall time one emitted slice may span.
    """

    def __init__(self, clock: Clock, speed: float, slice_ns: int = DEFAULT_SLICE_NS) -> None:
        if speed <= 0:
            raise ValueError(f"pacing needs a speed above 0, got {speed}")
        self.clock = clock
        self.speed = speed
        self.slice_ns = slice_ns
        self.first_t: int | None = None
        self.start_wall = 0
        self._max_t: int | None = None

    def slices(self, ts: np.ndarray) -> list[tuple[int, int, int]]:
        """Cut rows with event times ``ts`` (arrival order) into ``(start, stop, due_wall_ns)`` slices.

        A slice is due when its newest row is; with the running maximum a late row rides along with
        the rows around it instead of holding the stream back.
        """
        n = len(ts)
        if n == 0:
            return []
        if self.first_t is None:
            self.first_t = int(ts[0])
            self.start_wall = self.clock.monotonic_ns()
        running = np.maximum.accumulate(ts)
        if self._max_t is not None:
            running = np.maximum(running, self._max_t)
        self._max_t = int(running[-1])
        offset = np.maximum((running - self.first_t) / self.speed, 0.0)
        bucket = (offset // self.slice_ns).astype(np.int64)
        cuts = np.flatnonzero(np.diff(bucket)) + 1
        starts = [0, *cuts.tolist()]
        stops = [*cuts.tolist(), n]
        return [(a, b, self.start_wall + int(np.ceil(offset[b - 1]))) for a, b in zip(starts, stops, strict=True)]

    def snapshot(self, max_t: int | None) -> dict[str, Any]:
        """Where pacing stands: the first event time and the wall time elapsed since it was paced, so a
        restored pacer goes on at the same rate from its new clock's now (the time stopped in between
        does not count). ``max_t``: the newest event time *sent* (the pacer may have seen more of a frame
        sent only in part)."""
        if self.first_t is None:
            return {"first_t": None}
        return {"first_t": self.first_t, "max_t": max_t, "elapsed": self.clock.monotonic_ns() - self.start_wall}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back :meth:`snapshot`'s state (on a fresh pacer, before the first frame)."""
        if state["first_t"] is None:
            return
        self.first_t, self._max_t = state["first_t"], state["max_t"]
        self.start_wall = self.clock.monotonic_ns() - state["elapsed"]

    async def wait(self, due_ns: int, ctx: Context) -> bool:
        """Sleep until ``due_ns`` on the clock; False if a stop was asked for meanwhile."""
        while not ctx.stopping:
            remaining = due_ns - self.clock.monotonic_ns()
            if remaining <= 0:
                return True
            # a clock may wake us a nanosecond early (float seconds): the loop then sleeps the rest
            await self.clock.sleep(min(remaining, MAX_SLEEP_NS) / 1e9)
        return False


#: awaited with (first row, rows) of each slice of a frame that went out (see ``emit_paced``)
SliceSent = Callable[[int, int], Awaitable[None]]


def rate_limiter(ctx: Context, enabled: bool) -> AdaptiveRate | None:
    """The adaptive rate limit of a source run (None when disabled or outside a runtime)."""
    if not enabled or ctx.pressure is None:
        return None
    return AdaptiveRate(ctx.pressure, ctx.clock)


async def emit_paced(
    ctx: Context,
    frame: pl.DataFrame,
    tracker: WatermarkTracker,
    pacer: Pacer | None,
    limiter: AdaptiveRate | None = None,
    on_slice: SliceSent | None = None,
) -> int:
    """Send ``frame`` behind its watermarks, paced when ``pacer`` is given; return the rows sent.

    Under pressure (``limiter.engaged``) the frame goes in slices at the limiter's rate. Fewer rows
    than the frame holds are sent only when a stop is asked for while waiting. ``on_slice(start, rows)``
    is awaited after each slice of a frame sent in slices (a checkpoint may be taken there).
    """
    if limiter is not None and limiter.engaged:
        return await _emit_limited(ctx, frame, tracker, pacer, limiter, on_slice)
    if pacer is None:
        await emit_with_watermarks(ctx, frame, tracker)
        return frame.height
    sent = 0
    for start, stop, due in pacer.slices(frame.get_column("ts_event").to_numpy()):
        if not await pacer.wait(due, ctx):
            break
        await emit_with_watermarks(ctx, frame.slice(start, stop - start), tracker)
        sent += stop - start
        if on_slice is not None:
            await on_slice(start, stop - start)
    return sent


async def _emit_limited(
    ctx: Context,
    frame: pl.DataFrame,
    tracker: WatermarkTracker,
    pacer: Pacer | None,
    limiter: AdaptiveRate,
    on_slice: SliceSent | None = None,
) -> int:
    """``emit_paced`` in slices, each admitted by ``limiter`` first."""
    sent = 0

    def stopping() -> bool:
        return ctx.stopping

    while sent < frame.height:
        rows = limiter.slice_rows(frame.height - sent)
        if not await limiter.admit(rows, stopping):
            break
        got = await emit_paced(ctx, frame.slice(sent, rows), tracker, pacer)
        if on_slice is not None and got:
            await on_slice(sent, got)
        sent += got
        if got < rows:
            break
    return sent
