"""``SessionEngine``: per-key session windows on event time, merging when a row bridges two sessions.

A session of a key is a maximal run of its trades in which each trade lies less than ``gap`` after
the previous one (by event time). Its window is ``[first ts_event, last ts_event + gap)``, labelled by
its first trade, and it closes once the key's watermark reaches that end. A row whose
``[ts, ts + gap)`` overlaps two sessions merges them into one, whichever order the rows came in, so the
sessions are those of the sorted stream (interval union is order-free) however it was cut.

State is one merged partial per session (``revision`` -1 until first emitted, ``changed`` when rows
arrived since). Each frame touches only the sessions of the keys it holds. Under ``revise`` a late row
that overlaps a session kept for revisions, or whose own ``[ts, ts + gap)`` ends less than
``allowed_lateness`` before its watermark, is merged in, and the changed session is re-emitted at the
next close with ``revision + 1``. A merge can move a session's ``start`` earlier: the revised bar then
has a new key ``(symbol, timeframe, start)`` and the superseded one stays in a store (see the docs).
"""

from __future__ import annotations

from typing import ClassVar, Final

import polars as pl

from mdp.durations import format_duration
from mdp.operators.bars.engine import Aggregation
from mdp.operators.bars.progress import WM, Progress
from mdp.runtime.snapshots import FieldState

_STATE_EXTRA: Final = ("revision", "changed")


class SessionEngine(FieldState):
    """Session windows of every key for one operator (same calls as ``WindowEngine``).

    Args:
        gap: ns of quiet (event time) that ends a session.
        aggregation: how rows are summarised.
        retain: ns to keep an emitted session for revisions, or None to forget it at once.
    """

    CONFIG: ClassVar[frozenset[str]] = frozenset({"gap", "agg", "retain", "label"})

    def __init__(self, gap: int, aggregation: Aggregation, retain: int | None = None) -> None:
        if gap < 1:
            raise ValueError(f"a session gap must be at least 1 ns, got {gap}")
        self.gap = gap
        self.agg = aggregation
        self.retain = retain
        self.label = f"session_{format_duration(gap)}"
        self._state: pl.DataFrame | None = None  # merged partials + revision + changed
        self._late: list[pl.DataFrame] = []  # late rows waiting for their watermark to move on
        self.late_into_open = 0  # sessions count every late row they take as revised
        # per key, the latest end of a session already forgotten: a late row before it is refused, for
        # it could only belong to that session (whose bar must not restart at revision 0)
        self._forgotten = pl.DataFrame(schema={"symbol": pl.String, "__through": pl.Int64})

    # -- rows -----------------------------------------------------------------------------------------

    def add(self, rows: pl.DataFrame) -> None:
        """Take on-time rows: merge them into the sessions."""
        if rows.height == 0:
            return
        ordered = rows.sort("symbol", "ts_event")
        prev = pl.col("ts_event").shift(1).over("symbol")
        starts_new = (pl.col("ts_event") - prev >= self.gap).fill_null(True)
        sessions = (
            ordered.with_columns(starts_new.cum_sum().alias("__sid"))
            .with_columns(
                pl.col("ts_event").min().over("__sid").alias("start"),
                (pl.col("ts_event").max().over("__sid") + self.gap).alias("end"),
            )
            .drop("__sid")
        )
        fresh = self.agg.partials(sessions).with_columns(
            pl.lit(-1, pl.Int64).alias("revision"), pl.lit(True).alias("changed")
        )
        self._absorb(fresh)

    def _absorb(self, fresh: pl.DataFrame) -> None:
        if self._state is None or self._state.height == 0:
            self._state = self._merge_overlapping(fresh)
            return
        keys = fresh.get_column("symbol").unique().implode()
        touched = pl.col("symbol").is_in(keys)
        mine, others = self._state.filter(touched), self._state.filter(~touched)
        merged = self._merge_overlapping(pl.concat([mine, fresh], how="vertical"))
        self._state = pl.concat([others, merged], how="vertical")

    def _merge_overlapping(self, parts: pl.DataFrame) -> pl.DataFrame:
        """Merge sessions of a key whose ``[start, end)`` overlap, into one partial each."""
        ordered = parts.sort("symbol", "start")
        reach = pl.col("end").cum_max().shift(1).over("symbol")
        new_group = (pl.col("start") >= reach).fill_null(True)
        grouped = (
            ordered.with_columns(new_group.cum_sum().alias("__gid"))
            .with_columns(
                pl.col("start").min().over("__gid").alias("start"),
                pl.col("end").max().over("__gid").alias("end"),
            )
            .drop("__gid")
        )
        return self.agg.merge([grouped], keep=_STATE_EXTRA)

    def add_late(self, rows: pl.DataFrame) -> pl.Series:
        """Hold late rows (judged by ``__wm``) until their watermark moves on; none is refused yet."""
        self._late.append(rows)
        return rows.get_column("__row").clear()

    def _accept(self, rows: pl.DataFrame) -> pl.Series:
        """Merge the late rows of one watermark that some kept session (or their own interval) lets in,
        each judged against the sessions as they stood before the group; return the refused ``__row``."""
        retain = self.retain or 0
        own_ok = pl.col("ts_event") + self.gap + retain > pl.col(WM)
        if self._state is None or self._state.height == 0:
            ok = rows.select(own_ok).to_series()
        else:
            kept = self._state.select("symbol", pl.col("start").alias("__s"), pl.col("end").alias("__e"))
            near = (
                rows.select("__row", "symbol", "ts_event", WM)
                .join(kept, on="symbol", how="inner")
                .filter(
                    (pl.col("__s") < pl.col("ts_event") + self.gap)
                    & (pl.col("ts_event") < pl.col("__e"))
                    & (pl.col("__e") + retain > pl.col(WM))
                )
                .get_column("__row")
                .implode()
            )
            ok = rows.select(own_ok | pl.col("__row").is_in(near)).to_series()
        if self._forgotten.height:
            through = rows.select("symbol").join(self._forgotten, on="symbol", how="left", maintain_order="left")
            ok = ok & ~(rows.get_column("ts_event") < through.get_column("__through")).fill_null(False)
        self.add(rows.filter(ok).drop(WM, "__row"))
        return rows.filter(~ok).get_column("__row")

    # -- closing --------------------------------------------------------------------------------------

    def close(self, progress: Progress) -> pl.DataFrame | None:
        """Remove (or keep, under ``revise``) and return every changed session whose key's watermark has
        reached its end, each with its ``revision`` (0 the first time)."""
        state = self._state
        if state is None or state.height == 0:
            return None
        state = progress.with_effective(state)
        ready = pl.col("changed") & (pl.col("end") <= pl.col(WM))
        done = state.filter(ready).drop(WM).with_columns((pl.col("revision") + 1).alias("revision"))
        if done.height == 0:
            return None
        rest = state.filter(~ready).drop(WM)
        if self.retain is not None:
            rest = pl.concat([rest, done.with_columns(pl.lit(False).alias("changed"))], how="vertical")
        self._state = rest
        return done.drop("changed")

    def revise(self, progress: Progress, final: bool = False) -> tuple[pl.DataFrame | None, int, pl.Series]:
        """Merge the held late groups whose watermark has moved on (oldest first); the sessions they
        change are re-emitted by the next :meth:`close`. Returns no bars, the rows taken, the refused."""
        refused: list[pl.Series] = []
        taken = 0
        if self._late:
            waiting = pl.concat(self._late, how="vertical")
            moved = pl.Series([True] * waiting.height) if final else progress.per_row(waiting) > waiting.get_column(WM)
            ready, rest = waiting.filter(moved), waiting.filter(~moved)
            self._late = [rest] if rest.height else []
            for _, group in sorted(ready.partition_by(WM, as_dict=True).items(), key=lambda kv: int(kv[0][0])):
                no = self._accept(group)  # per watermark value: few
                refused.append(no)
                taken += group.height - no.len()
        ids = pl.concat(refused) if refused else pl.Series("__row", [], dtype=pl.Int64)
        return None, taken, ids

    def prune(self, progress: Progress) -> None:
        """Forget emitted sessions with ``end + retain`` at or before their key's watermark."""
        if self.retain is None or self._state is None or self._state.height == 0:
            return
        state = progress.with_effective(self._state)
        stale = ~pl.col("changed") & (pl.col("end") + self.retain <= pl.col(WM))
        gone = state.filter(stale)
        if gone.height:
            through = gone.group_by("symbol").agg(pl.col("end").max().alias("__through"))
            merged = pl.concat([self._forgotten, through]).group_by("symbol").agg(pl.col("__through").max())
            self._forgotten = merged
        self._state = state.filter(~stale).drop(WM)

    def waiting_rows(self) -> pl.Series:
        """``__row`` ids of the late rows still held."""
        if not self._late:
            return pl.Series("__row", [], dtype=pl.Int64)
        return pl.concat([f.get_column("__row") for f in self._late])

    @property
    def open_windows(self) -> int:
        """Sessions holding rows not yet emitted."""
        return 0 if self._state is None else int(self._state.get_column("changed").sum())

    @property
    def kept_windows(self) -> int:
        """Emitted sessions kept for revisions."""
        return 0 if self._state is None else int((~self._state.get_column("changed")).sum())


__all__ = ["SessionEngine"]
