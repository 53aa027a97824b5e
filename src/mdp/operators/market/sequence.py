"""``SequenceCheck``: find gaps and repeats in exchange sequence numbers or trade ids, per symbol.

Rows pass through unchanged on ``out``. For each key (the symbol by default) the operator remembers the
highest number seen; a row whose number is not ``highest + 1`` produces one event on port ``gaps``:

- ``gap``: the number jumped ahead (``got > expected``); ``missing`` says how many numbers were skipped;
- ``repeat``: the number was already passed (``got < expected``): a duplicate or a row out of order.

With ``contiguous: false`` (numbers that only increase, such as Binance book ``update_id``), jumps are
normal and only repeats are reported. Checking is in arrival order, the order the feed delivered; the
first row of a key sets its start. A number that cannot be read as an integer (a trade id such as
``"A-17"``) is counted as ``unparsable`` and skipped by the check. Work is vectorised per frame with
polars window expressions; the state is one number per key.

Event schema on ``gaps``: the key columns, ``expected`` (Int64), ``got`` (Int64), ``missing`` (Int64),
``kind`` (String) and ``ts_event`` (Int64, of the row that revealed it).

Example::

    >>> import polars as pl
    >>> from mdp.testing import run_operator
    >>> frame = pl.DataFrame({"symbol": ["X"] * 4, "ts_event": [1, 2, 3, 4], "seq": [7, 8, 11, 9]})
    >>> check = SequenceCheck()
    >>> [f.height for f in run_operator(check, [frame])]  # the rows pass through on 'out'
    [4]
    >>> check.stats()["gaps"], check.stats()["missing"], check.stats()["repeats"]
    (1, 2, 1)
"""

from __future__ import annotations

from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.errors import ConfigError, MdpError
from mdp.runtime.operator import Context, Operator

_N, _LAST = "__mdp_n", "__mdp_last"


class SequenceCheckParams(BaseModel):
    """Config of ``operator.sequence_check``."""

    model_config = ConfigDict(extra="forbid")

    key: list[str] = Field(default_factory=lambda: ["symbol"], min_length=1, description="columns of one sequence")
    column: str = Field(default="seq", description="the sequence number or trade id column")
    contiguous: bool = Field(default=True, description="numbers go up by exactly 1 (report gaps), else only increase")
    time_column: str = Field(default="ts_event", description="event time copied into each event")


class SequenceCheck(Operator):
    """Pass rows through and report gaps and repeats in a per-key sequence on port ``gaps``.

    Args:
        key: columns that identify one sequence (``["symbol"]``; add ``"venue"`` when symbols repeat).
        column: the number to check (``seq``, ``trade_id``, an update id), cast to Int64.
        contiguous: numbers step by 1; False reports only repeats.
        time_column: event time copied into each event.
    """

    Params = SequenceCheckParams
    outputs = ("out", "gaps")

    def __init__(
        self,
        key: list[str] | None = None,
        column: str = "seq",
        contiguous: bool = True,
        time_column: str = "ts_event",
    ) -> None:
        try:
            params = SequenceCheckParams(
                key=["symbol"] if key is None else key, column=column, contiguous=contiguous, time_column=time_column
            )
        except ValidationError as exc:
            raise ConfigError(f"operator.sequence_check: {exc}") from exc
        self.key = params.key
        self.column = params.column
        self.contiguous = params.contiguous
        self.time_column = params.time_column
        self._last: pl.DataFrame | None = None  # key columns + highest number seen
        self.gaps = 0
        self.missing = 0
        self.repeats = 0
        self.unparsable = 0

    def port_kind(self, port: str) -> str | None:
        return None if port == "gaps" else self.output_kind

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        needed = [*self.key, self.column, self.time_column]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise MdpError(f"sequence check {ctx.node!r}: the frame lacks {missing}; it has {frame.columns}")
        events = self._check(frame.select(needed), ctx)
        await ctx.emit(frame)
        if events.height:
            await ctx.emit(events, "gaps")

    def _check(self, rows: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        numbered = rows.with_columns(pl.col(self.column).cast(pl.Int64, strict=False).alias(_N))
        bad = numbered.height - numbered.get_column(_N).count()
        if bad:
            self.unparsable += bad
            ctx.count("unparsable", bad)
            numbered = numbered.filter(pl.col(_N).is_not_null())
        if self._last is None:
            self._last = numbered.select(self.key).clear().with_columns(pl.lit(None, dtype=pl.Int64).alias(_LAST))
        joined = numbered.join(self._last, on=self.key, how="left", maintain_order="left", nulls_equal=True)
        before = pl.max_horizontal(pl.col(_N).cum_max().shift(1).over(self.key), pl.col(_LAST))
        checked = joined.with_columns(before.alias("prev")).filter(pl.col("prev").is_not_null())
        expected = pl.col("prev") + 1
        kind = (
            pl.when(pl.col(_N) <= pl.col("prev"))
            .then(pl.lit("repeat"))
            .when((pl.col(_N) > expected) & pl.lit(self.contiguous))
            .then(pl.lit("gap"))
            .otherwise(pl.lit(None, dtype=pl.String))
        )
        events = (
            checked.with_columns(kind.alias("kind"), expected.alias("expected"))
            .filter(pl.col("kind").is_not_null())
            .select(
                *self.key,
                "expected",
                pl.col(_N).alias("got"),
                pl.when(pl.col("kind") == "gap").then(pl.col(_N) - expected).otherwise(0).alias("missing"),
                "kind",
                pl.col(self.time_column).cast(pl.Int64).alias("ts_event"),
            )
        )
        highest = numbered.group_by(self.key, maintain_order=True).agg(pl.col(_N).max().alias(_LAST))
        self._last = (
            pl.concat([self._last, highest], how="vertical_relaxed")
            .group_by(self.key, maintain_order=True)
            .agg(pl.col(_LAST).max())
        )
        if events.height:
            gaps = events.filter(pl.col("kind") == "gap")
            n_gaps, n_missing = gaps.height, int(gaps.get_column("missing").sum())
            self.gaps += n_gaps
            self.missing += n_missing
            self.repeats += events.height - n_gaps
            ctx.count("gaps", n_gaps)
            ctx.count("missing", n_missing)
            ctx.count("repeats", events.height - n_gaps)
        return events

    def stats(self) -> dict[str, Any]:
        return {
            "gaps": self.gaps,
            "missing": self.missing,
            "repeats": self.repeats,
            "unparsable": self.unparsable,
            "keys": 0 if self._last is None else self._last.height,
        }

    def snapshot(self) -> dict[str, Any]:
        """The highest number per key (a frame) and the counters."""
        return {
            "last": None if self._last is None else self._last.clone(),
            "counters": {k: v for k, v in self.stats().items() if k != "keys"},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        self._last = state["last"]
        c = state["counters"]
        self.gaps, self.missing, self.repeats, self.unparsable = c["gaps"], c["missing"], c["repeats"], c["unparsable"]
