"""``WindowEngine``: the keyed state of fixed windows (tumbling, sliding, calendar) behind the bar operators.

Rows are assigned to their windows (``start``/``end`` columns; several rows per trade for sliding
windows), held until enough pile up, then aggregated into partials with one ``group_by`` and filed
under their window's ``end``. So a frame's cost never grows with the number of open windows, tiny
pieces (a source cuts one before every late row) cost a concatenation, and a watermark that closes
nothing costs a comparison. The newest frame always waits for the next watermark: in a replay that
watermark closes most of it, so its rows are aggregated once, at the close, and never merged.
Closing merges a window's partials; under ``revise`` the merged partial is kept, with its last
emitted ``revision``, until the watermark passes ``end + allowed_lateness``.

Late rows under ``revise`` wait in groups, one per watermark value that judged them, until their key's
watermark moves on; each group then becomes one revision of each window it touches. Grouping by the
judging watermark (exact per row, see :mod:`mdp.runtime.watermarks`) rather than by frame is what
makes revisions the same however the stream was cut.
"""

from __future__ import annotations

import heapq
from typing import ClassVar, Final, Protocol

import polars as pl

from mdp.operators.bars.progress import WM, Progress
from mdp.runtime.snapshots import FieldState
from mdp.time.windows import WindowAssigner

#: merge a window's partials into one once this many have piled up (long windows, small frames)
_COMPACT_AT: Final = 32
#: aggregate held rows once this many are held before the newest frame: small enough that a paced (live)
#: feed is aggregated as it arrives, so closing a window only merges partials (bar latency), large enough
#: to batch replay pieces
HOLD_ROWS: Final = 8_192


class Aggregation(Protocol):
    """How rows become partials, partials merge, and merged partials become output rows."""

    def partials(self, rows: pl.DataFrame) -> pl.DataFrame:
        """One partial per ``(symbol, start, end)`` of ``rows``."""
        ...

    def merge(self, parts: list[pl.DataFrame], keep: tuple[str, ...] = ()) -> pl.DataFrame:
        """One partial per ``(symbol, start, end)``; ``keep`` columns take their maximum."""
        ...

    def finish(self, parts: pl.DataFrame, label: str) -> pl.DataFrame:
        """Output rows (bars) from merged partials, sorted by ``(start, symbol)``."""
        ...


class WindowEngine(FieldState):
    """Open and recently closed windows of every key, for one operator.

    Args:
        assigner: the windowing scheme.
        aggregation: how rows are summarised.
        retain: ns to keep a closed window for revisions (``allowed_lateness``), or None (``drop`` and
            ``side_output``: a closed window is forgotten at once).
    """

    CONFIG: ClassVar[frozenset[str]] = frozenset({"assigner", "agg", "retain", "label"})

    def __init__(self, assigner: WindowAssigner, aggregation: Aggregation, retain: int | None = None) -> None:
        self.assigner = assigner
        self.agg = aggregation
        self.retain = retain
        self.label = assigner.label
        self._open: dict[int, list[pl.DataFrame]] = {}  # window end -> partials, arrival order
        self._ends: list[int] = []  # heap of the keys of _open
        self._held: list[pl.DataFrame] = []  # assigned rows not yet aggregated
        self._held_span: list[tuple[int, int]] = []  # (smallest, largest) window end of each held frame
        self._held_rows = 0
        self._held_end: int | None = None  # smallest window end among the held rows
        self._closed: dict[int, pl.DataFrame] = {}  # window end -> merged partials with "revision"
        self._closed_ends: list[int] = []
        self._late: list[pl.DataFrame] = []  # late rows waiting for their watermark to move on
        #: held rows before the newest frame that get aggregated; the bars operator raises it while it
        #: batches its closes, so a batch is aggregated once, at its close
        self.hold_rows = HOLD_ROWS
        self.late_into_open = 0  # late rows (revise) taken by a window still open

    # -- on-time rows ---------------------------------------------------------------------------------

    def add(self, rows: pl.DataFrame) -> None:
        """Take on-time rows (every window they lie in is open)."""
        self._hold(self.assigner.assign(rows))

    def _hold(self, assigned: pl.DataFrame) -> None:
        if assigned.height == 0:
            return
        ends = assigned.get_column("end")
        low, high = ends.min(), ends.max()
        assert isinstance(low, int)
        assert isinstance(high, int)
        self._held.append(assigned)
        self._held_span.append((low, high))
        self._held_rows += assigned.height
        self._held_end = low if self._held_end is None else min(self._held_end, low)
        # the newest frame waits for the next watermark, which usually closes most of it: a replayed
        # window is then aggregated once, at its close, and never merged; a trickle of small frames
        # (a live feed) is aggregated as it arrives, so a close stays cheap
        if self._held_rows - assigned.height >= self.hold_rows:
            self._aggregate()

    @property
    def held_rows(self) -> int:
        """Assigned rows held, not yet aggregated."""
        return self._held_rows

    def settle(self) -> None:
        """Aggregate every held row and merge each open window's partials into one, so the next close
        aggregates only the rows that come after (the bars operator calls this while its input is idle)."""
        self._aggregate()
        for end, parts in self._open.items():
            if len(parts) > 1:
                self._open[end] = [self.agg.merge(parts)]

    def _aggregate(self) -> None:
        """Turn held rows into partials filed under their window ends."""
        if not self._held:
            return
        rows = self._held[0] if len(self._held) == 1 else pl.concat(self._held, rechunk=False)
        self._held, self._held_span, self._held_rows, self._held_end = [], [], 0, None
        partial = self.agg.partials(rows)
        ends = partial.get_column("end")
        first = ends.min()
        assert isinstance(first, int)
        groups = {(first,): partial} if first == ends.max() else partial.partition_by("end", as_dict=True)
        for (end, *_), part in groups.items():
            assert isinstance(end, int)
            parts = self._open.get(end)
            if parts is None:
                self._open[end] = [part]
                heapq.heappush(self._ends, end)
            else:
                parts.append(part)
                if len(parts) >= _COMPACT_AT:
                    self._open[end] = [self.agg.merge(parts)]

    # -- closing --------------------------------------------------------------------------------------

    def close(self, progress: Progress) -> pl.DataFrame | None:
        """Remove and return (merged partials; with ``revision`` 0 when windows are retained) every window
        whose key's watermark has reached its end; None if there is none."""
        fresh: pl.DataFrame | None = None
        if self._held_end is not None and self._held_end <= progress.highest:
            if progress.keys is None:
                fresh = self._take_held(progress.inband)  # rows of closing windows, aggregated once
            else:
                self._aggregate()
        parts: list[pl.DataFrame] = [] if fresh is None else [fresh]
        while self._ends and self._ends[0] <= progress.inband:
            parts.extend(self._open.pop(heapq.heappop(self._ends)))
        if progress.keys is not None:
            parts.extend(self._close_per_key(progress))
        if not parts:
            return None
        merged = parts[0] if len(parts) == 1 else self.agg.merge(parts)
        if self.retain is not None:  # kept for revisions: the revision count starts here
            merged = merged.with_columns(pl.lit(0, pl.Int64).alias("revision"))
            self._keep(merged)
        return merged

    def _take_held(self, watermark: int) -> pl.DataFrame | None:
        """Aggregate the held rows of windows ending by ``watermark`` into partials; keep the rest held."""
        closing: list[pl.DataFrame] = []
        kept: list[pl.DataFrame] = []
        spans: list[tuple[int, int]] = []
        for frame, (low, high) in zip(self._held, self._held_span, strict=True):  # per held frame: few
            if high <= watermark:
                closing.append(frame)
            elif low > watermark:
                kept.append(frame)
                spans.append((low, high))
            else:  # a frame across the watermark: split it
                done = frame.get_column("end") <= watermark
                closing.append(frame.filter(done))
                rest = frame.filter(~done)
                ends = rest.get_column("end")
                kept.append(rest)
                spans.append((int(ends.min()), int(ends.max())))  # type: ignore[arg-type]
        self._held, self._held_span = kept, spans
        self._held_rows = sum(f.height for f in kept)
        self._held_end = min(low for low, _ in spans) if spans else None
        if not closing:
            return None
        return self.agg.partials(closing[0] if len(closing) == 1 else pl.concat(closing, rechunk=False))

    def _close_per_key(self, progress: Progress) -> list[pl.DataFrame]:
        highest = progress.highest
        done = []
        for end in sorted(e for e in self._open if e <= highest):  # per window: a loop is fine here
            parts = self._open[end]
            merged = progress.with_effective(parts[0] if len(parts) == 1 else self.agg.merge(parts))
            ready = pl.col("end") <= pl.col(WM)
            now, later = merged.filter(ready).drop(WM), merged.filter(~ready).drop(WM)
            if now.height:
                done.append(now)
            if later.height:
                self._open[end] = [later]
            else:
                del self._open[end]
        if done:
            self._ends = list(self._open)
            heapq.heapify(self._ends)
        return done

    def _keep(self, merged: pl.DataFrame) -> None:
        for (end, *_), part in merged.partition_by("end", as_dict=True).items():
            assert isinstance(end, int)
            old = self._closed.get(end)
            if old is None:
                heapq.heappush(self._closed_ends, end)
                self._closed[end] = part
            else:  # a per-key close adds other keys to an end already closed for some
                self._closed[end] = pl.concat([old, part], how="vertical")

    def prune(self, progress: Progress) -> None:
        """Forget closed windows with ``end + retain`` at or before their key's watermark: no late row
        can revise them now."""
        if self.retain is None:
            return
        while self._closed_ends and self._closed_ends[0] + self.retain <= progress.inband:
            self._closed.pop(heapq.heappop(self._closed_ends))
        if progress.keys is None:
            return
        for end in [e for e in self._closed if e + self.retain <= progress.highest]:  # per window
            kept = progress.with_effective(self._closed[end])
            kept = kept.filter(pl.col("end") + self.retain > pl.col(WM)).drop(WM)
            if kept.height:
                self._closed[end] = kept
            else:
                del self._closed[end]
        self._closed_ends = list(self._closed)
        heapq.heapify(self._closed_ends)

    # -- late rows under ``revise`` -------------------------------------------------------------------

    def add_late(self, rows: pl.DataFrame) -> pl.Series:
        """Take late rows judged by their ``__wm`` column; return the ``__row`` ids none of whose windows
        can take them all (windows ending ``allowed_lateness`` or more before ``__wm``)."""
        retain = self.retain or 0
        pairs = self.assigner.assign(rows)
        is_open = pl.col("end") > pl.col(WM)
        revisable = pl.col("end") + retain > pl.col(WM)
        opened = pairs.filter(is_open)
        self.late_into_open += opened.get_column("__row").n_unique()
        self._hold(opened.drop(WM))
        waiting = pairs.filter(~is_open & revisable)
        if waiting.height:
            self._late.append(waiting)
        return pairs.filter(~revisable).get_column("__row").unique().sort()

    def revise(self, progress: Progress, final: bool = False) -> tuple[pl.DataFrame | None, int, pl.Series]:
        """Merge the late groups whose watermark has moved on into their closed windows.

        Returns the re-emitted partials (each with its new ``revision``, in group order), the number
        of late rows they took, and the refused row ids (none: refusal happens in :meth:`add_late`).
        """
        none = pl.Series("__row", [], dtype=pl.Int64)
        if not self._late:
            return None, 0, none
        waiting = pl.concat(self._late, how="vertical")
        if final:
            ready, self._late = waiting, []
        else:
            moved = progress.per_row(waiting) > waiting.get_column(WM)
            ready = waiting.filter(moved)
            rest = waiting.filter(~moved)
            self._late = [rest] if rest.height else []
        if ready.height == 0:
            return None, 0, none
        out: list[pl.DataFrame] = []
        for (_wm,), group in sorted(ready.partition_by(WM, as_dict=True).items(), key=_first):
            partial = self.agg.partials(group.drop(WM, "__row")).with_columns(pl.lit(-1, pl.Int64).alias("revision"))
            for (end, *_), part in partial.partition_by("end", as_dict=True).items():  # per window
                assert isinstance(end, int)
                out.append(self._revise_window(end, part))
        return pl.concat(out, how="vertical"), ready.get_column("__row").n_unique(), none

    def _revise_window(self, end: int, part: pl.DataFrame) -> pl.DataFrame:
        old = self._closed.get(end)
        if old is None:
            heapq.heappush(self._closed_ends, end)
        merged = self.agg.merge([part] if old is None else [old, part], keep=("revision",))
        touched = merged.get_column("symbol").is_in(part.get_column("symbol").implode())
        merged = merged.with_columns(
            pl.when(touched).then(pl.col("revision") + 1).otherwise(pl.col("revision")).alias("revision")
        )
        self._closed[end] = merged
        return merged.filter(touched)

    # -- inspection -----------------------------------------------------------------------------------

    @property
    def open_windows(self) -> int:
        """Number of ``(symbol, window)`` pairs holding rows but not yet emitted."""
        self._aggregate()
        merged = (parts[0] if len(parts) == 1 else self.agg.merge(parts) for parts in self._open.values())
        return sum(m.height for m in merged)

    @property
    def kept_windows(self) -> int:
        """Number of closed ``(symbol, window)`` pairs kept for revisions."""
        return sum(f.height for f in self._closed.values())


def _first(item: tuple[tuple[object, ...], pl.DataFrame]) -> int:
    value = item[0][0]
    assert isinstance(value, int)
    return value


__all__ = ["Aggregation", "WindowEngine"]
