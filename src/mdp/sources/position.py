"""Where a screening source stands in its input, exactly, and the send loop that keeps it.

A source numbers its input rows ``0, 1, 2, ...`` in its input's order (a file's rows, a synthetic
feed's rows in delivery order) with a hidden column (:data:`~mdp.sources.validation.ROW_COLUMN`), screens
them, reads ahead on a thread and sends good rows on ``out`` and dead letters on ``deadletter``. What
went downstream is not a prefix of the input: dead letters of a block go out before the good rows
held for the next frame, rows read ahead were not delivered, and a paced frame may go out in part. So
the position is three frontiers (:class:`Position`): every good row before ``good`` was sent and none
after; every bad row before ``bad`` was delivered (sent, dropped or counted) and none after; and the
first ``lines`` malformed text lines (CSV lines with no row) were delivered. A resumed source reads
again from row ``good``, drops the dead letters before ``bad`` and the first ``lines`` malformed lines,
and cuts its frames where the uninterrupted run would have (``emitted`` good rows went out before).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl

from mdp.runtime.operator import NO_WATERMARK, Context
from mdp.runtime.pressure import AdaptiveRate
from mdp.runtime.snapshots import FieldState
from mdp.runtime.watermarks import WatermarkTracker
from mdp.sources.pacing import Pacer, emit_paced, in_thread
from mdp.sources.validation import ROW_COLUMN, BadRows, RecordScreen


class Position(FieldState):
    """A source's position in its input (see the module docstring): ``good``, ``bad``, ``lines`` and
    ``emitted`` (good rows sent so far, the source's ``rows_emitted``)."""

    def __init__(self) -> None:
        self.good = 0
        self.bad = 0
        self.lines = 0
        self.emitted = 0
        self._mdp_lines_seen = 0  # malformed lines met in this run (a resumed run meets them again)

    def number(self, frame: pl.DataFrame, first: int) -> pl.DataFrame:
        """``frame`` (rows ``first, first+1, ...`` of the input) with its rows numbered."""
        return frame.with_columns(pl.int_range(first, first + frame.height, dtype=pl.Int64).alias(ROW_COLUMN))

    def unseen(self, bad: BadRows) -> BadRows:
        """The dead letters of ``bad`` not delivered before (a resumed source meets some again)."""
        if bad.rows is None:  # malformed lines, counted from the start of the input
            first = self._mdp_lines_seen
            self._mdp_lines_seen += bad.frame.height
            skip = min(max(self.lines - first, 0), bad.frame.height)
            return bad if skip == 0 else BadRows(bad.frame.slice(skip))
        if bad.rows.len() == 0 or int(bad.rows[0]) >= self.bad:
            return bad
        keep = bad.rows >= self.bad
        return BadRows(bad.frame.filter(keep), bad.rows.filter(keep), bad.end)

    def delivered(self, bad: BadRows) -> None:
        """``bad`` (as :meth:`unseen` left it) went downstream."""
        if bad.rows is None:
            self.lines += bad.frame.height
        elif bad.end is not None:
            self.bad = max(self.bad, bad.end)

    def sent(self, rows: pl.Series, n: int) -> None:
        """The first ``n`` rows of a frame numbered ``rows`` went out on ``out``."""
        self.emitted += n
        if n:
            self.good = max(self.good, int(rows[n - 1]) + 1)
            self.bad = max(self.bad, self.good)  # a block's dead letters go out before its good rows


async def pump(
    ctx: Context,
    items: Iterator[pl.DataFrame | BadRows],
    screen: RecordScreen,
    position: Position,
    tracker: WatermarkTracker,
    pacer: Pacer | None,
    limiter: AdaptiveRate | None,
    on_bad: Callable[[pl.DataFrame], None] | None = None,
) -> bool:
    """Send numbered good frames and dead letters from ``items`` (read ahead on a thread), keeping
    ``position``; True when the input was sent to its end, False when the source stopped."""
    async with contextlib.aclosing(in_thread(items)) as frames:
        async for frame in frames:
            if isinstance(frame, BadRows):  # even when stopping: rows read are never lost uncounted
                bad = position.unseen(frame)
                if on_bad is not None:
                    on_bad(bad.frame)
                await screen.deliver(bad, ctx)
                position.delivered(bad)
                continue
            if ctx.stopping:
                return False
            rows = frame.get_column(ROW_COLUMN)
            done = 0

            async def slice_sent(start: int, count: int, rows: pl.Series = rows) -> None:
                nonlocal done
                position.sent(rows.slice(start, count), count)
                done = start + count
                await ctx.checkpoint_point()  # a paced frame goes out in slices: the position is exact between them

            sent = await emit_paced(ctx, frame.drop(ROW_COLUMN), tracker, pacer, limiter, slice_sent)
            if done < sent:
                position.sent(rows.slice(done, sent - done), sent - done)
            if sent < frame.height:
                return False
            await ctx.checkpoint_point()  # between two frames the position is exact
    return True


def source_state(
    position: Position, screen: RecordScreen | None, tracker: WatermarkTracker | None, pacer: Pacer | None
) -> dict[str, Any]:
    """The snapshot of a screening source between two messages: its position, its bad-row counts, its
    watermark tracker and its pacer (times as ages on the clock)."""
    return {
        "position": position.snapshot(),
        "bad_counts": {} if screen is None else dict(screen.counts),
        "unrouted": 0 if screen is None else screen.unrouted,
        "tracker": None if tracker is None else tracker.snapshot(),
        "pacer": None if pacer is None or tracker is None else pacer.snapshot(_sent_max(tracker)),
    }


def resume_state(
    state: dict[str, Any], screen: RecordScreen, tracker: WatermarkTracker, pacer: Pacer | None
) -> Position:
    """Put a fresh run's screen, tracker and pacer in ``state`` (:func:`source_state`); its position."""
    position = Position()
    position.restore(state["position"])
    screen.counts.update(state["bad_counts"])
    screen.unrouted = state["unrouted"]
    if state["tracker"] is not None:
        tracker.restore(state["tracker"])
    if pacer is not None and state["pacer"] is not None:
        pacer.restore(state["pacer"])
    return position


def _sent_max(tracker: WatermarkTracker) -> int | None:
    return None if tracker.max_ts == NO_WATERMARK else tracker.max_ts


__all__ = ["Position", "pump", "resume_state", "source_state"]
