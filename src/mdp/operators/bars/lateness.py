"""Late data, chosen per operator and never silent: ``drop``, ``side_output`` or ``revise``.

The rule (:mod:`mdp.runtime.watermarks`): a row is *late* when its ``ts_event`` is older than the
watermark in force when it arrives (with ``watermark: per_key``, the larger of that and its own key's
watermark). What a windowed operator does with it:

- ``drop``: counted (``late_rows``, ``late_dropped``, per symbol in ``stats()``) and dropped.
- ``side_output``: sent unchanged on the ``late`` output port, so any sink can keep it; counted as
  dropped when no edge leaves ``late``.
- ``revise``: merged into its window(s). A window still open simply takes it. A window that closed
  less than ``allowed_lateness`` ago (``end + allowed_lateness > watermark``) is kept that long and
  re-emitted with ``revision + 1``; stores keep the highest revision. A row further behind goes to the
  side output like ``side_output`` does (or is counted as dropped without a ``late`` edge).

:class:`LateParams` holds the two settings every windowed operator shares; :class:`LateRows` keeps
the counters and routes rejected rows.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mdp.durations import DurationNs
from mdp.runtime.operator import Context
from mdp.runtime.snapshots import FieldState

LatePolicy = Literal["drop", "side_output", "revise"]
#: the output port late rows are sent on
LATE_PORT: Final = "late"


class LateParams(BaseModel):
    """The late-data settings a windowed operator's params share."""

    model_config = ConfigDict(extra="forbid")

    late_policy: LatePolicy = Field(
        default="drop",
        description="late rows: 'drop' (counted), 'side_output' (to port 'late'), or 'revise' (re-emit the "
        "bar with revision + 1 while its window is less than allowed_lateness behind the watermark)",
    )
    allowed_lateness: DurationNs = Field(
        default=0,
        description="with 'revise': how long after its end a window still takes late rows ('30s'); "
        "rows later than that go to port 'late'",
    )

    @model_validator(mode="after")
    def _lateness_needs_revise(self) -> Self:
        if self.allowed_lateness and self.late_policy != "revise":
            raise ValueError(
                f"allowed_lateness applies to late_policy 'revise' only (late_policy is {self.late_policy!r}); "
                "set late_policy: revise or remove allowed_lateness"
            )
        return self


class LateRows(FieldState):
    """Counts late rows and sends the ones no window takes to the ``late`` port (or counts them dropped).

    Args:
        policy: the operator's late policy.
        allowed_lateness: ns a closed window keeps taking rows under ``revise``.
    """

    CONFIG: ClassVar[frozenset[str]] = frozenset({"policy", "allowed_lateness"})

    def __init__(self, policy: LatePolicy, allowed_lateness: int = 0) -> None:
        self.policy: LatePolicy = policy
        self.allowed_lateness = allowed_lateness
        self.late_rows = 0
        self.by_symbol: dict[str, int] = {}
        self.dropped = 0
        self.side_output = 0
        self.revised_rows = 0
        self.revisions = 0

    def seen(self, late: pl.DataFrame, ctx: Context | None = None) -> None:
        """Count ``late`` (every row the lateness rule calls late, whatever happens to it next)."""
        if late.height == 0:
            return
        self.late_rows += late.height
        counts = self.by_symbol
        if late.height <= 2_048:  # up to a few thousand rows: counting in Python beats a group_by (about 1 ms)
            for symbol in late.get_column("symbol").to_list():
                counts[symbol] = counts.get(symbol, 0) + 1
        else:
            for symbol, n in late.group_by("symbol").len().iter_rows():
                counts[symbol] = counts.get(symbol, 0) + n
        if ctx is not None:
            ctx.count("late_rows", late.height)

    async def reject(self, ids: pl.Series, frame: pl.DataFrame, ctx: Context | None) -> None:
        """Rows ``ids`` (ascending positions in ``frame``) that no window takes: to the ``late`` port
        unless the policy is ``drop`` or the port has no edge (then counted as dropped)."""
        n = ids.len()
        if n == 0:
            return
        if self.policy != "drop" and ctx is not None and ctx.connected(LATE_PORT):
            self.side_output += n
            ctx.count("late_side_output", n)
            first, last = int(ids[0]), int(ids[-1])
            rows = frame.slice(first, n) if last - first == n - 1 else frame[ids.to_numpy()]
            await ctx.emit(rows, LATE_PORT)
        else:
            self.dropped += n
            if ctx is not None:
                ctx.count("late_dropped", n)

    def revised(self, rows: int, bars: int, ctx: Context | None) -> None:
        """Count ``rows`` merged into closed windows and the ``bars`` re-emitted for them."""
        self.revised_rows += rows
        self.revisions += bars
        if ctx is not None:
            ctx.count("late_revised", rows)
            ctx.count("revisions", bars)

    def stats(self) -> dict[str, Any]:
        return {
            "late_rows": self.late_rows,
            "late_rows_by_symbol": dict(self.by_symbol),
            "late_dropped": self.dropped,
            "late_side_output": self.side_output,
            "late_revised": self.revised_rows,
            "revisions": self.revisions,
        }


__all__ = ["LATE_PORT", "LateParams", "LatePolicy", "LateRows"]
