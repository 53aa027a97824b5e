"""Stream-stream joins in event time: ``AsofJoin`` (a trade to the prevailing quote) and ``WindowJoin``.

Both take two inputs told apart by input name (``ctx.input``: the upstream node, or the edge's
``target``) and are driven by the watermark, the minimum over both inputs. A row is late when its
``ts_event`` is below that watermark on arrival (the project rule).

``AsofJoin`` holds each trade until the watermark proves its match is known (``backward``: the
watermark is above ``t``; ``forward``/``nearest``: a quote at or after ``t``, or ``t + tolerance``, is
below it), then joins it with polars ``join_asof`` against the quotes it holds, pruned at every
watermark to the last per key below it plus all above it. Its output equals one batch ``join_asof``
over the whole streams whenever no row is late. Late trades are dropped and counted or go to port
``late``; late quotes are dropped and counted. ``WindowJoin``: see its docstring.

Example::

    >>> import asyncio
    >>> import polars as pl
    >>> from mdp.records import Watermark
    >>> from mdp.runtime.graph import Dag, Node
    >>> from mdp.testing import ListSink, ListSource, run_graph
    >>> trades = pl.DataFrame({"symbol": ["X", "X"], "ts_event": [5, 12], "price": [10.0, 11.0]})
    >>> quotes = pl.DataFrame({"symbol": ["X", "X"], "ts_event": [3, 10], "bid": [9.5, 10.5],
    ...                        "bid_size": 1.0, "ask": [10.5, 11.5], "ask_size": 1.0})
    >>> sink = ListSink()
    >>> dag = Dag().add_node(Node("trades", ListSource([trades]))).add_node(Node("quotes", ListSource([quotes])))
    >>> dag = dag.add_node(Node("join", AsofJoin())).add_node(Node("sink", sink))
    >>> dag = dag.add_edge("trades", "join").add_edge("quotes", "join").add_edge("join", "sink")
    >>> _ = asyncio.run(run_graph(dag))
    >>> sink.frame.select("ts_event", "price", "quote_ts_event", "bid").rows()
    [(5, 10.0, 3, 9.5), (12, 11.0, 10, 10.5)]
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs
from mdp.errors import ConfigError, MdpError
from mdp.records import END_OF_TIME, QUOTE_SCHEMA
from mdp.runtime.operator import NO_WATERMARK, Context, Operator

_I, _W, _CAND = "__mdp_arrival", "__mdp_window", "__mdp_candidate"
_P = TypeVar("_P", bound=BaseModel)
_QUOTE = ("ts_event", "bid", "bid_size", "ask", "ask_size")  # a right name the left side has gets right_prefix


class AsofJoinParams(BaseModel):
    """Config of ``operator.asof_join``."""

    model_config = ConfigDict(extra="forbid")

    left: str = Field(default="trades", description="input name of the left side (upstream node or edge target)")
    right: str = Field(default="quotes", description="input name of the right side")
    by: list[str] = Field(default_factory=lambda: ["symbol"], description="exact-match key columns")
    time_column: str = Field(default="ts_event", description="the event-time column matched as of")
    strategy: Literal["backward", "forward", "nearest"] = Field(default="backward", description="polars strategy")
    tolerance: DurationNs | None = Field(default=None, description="largest distance of a match; none: no limit")
    right_columns: list[str] = Field(default_factory=lambda: list(_QUOTE), min_length=1, description="right columns")
    right_prefix: str = Field(default="quote_", min_length=1, description="prefix of clashing right column names")
    late: Literal["drop", "side_output"] = Field(default="drop", description="late left rows: drop or port 'late'")


def _params(model: type[_P], component_id: str, durations: dict[str, int | str | None], **values: Any) -> _P:
    """Validate constructor arguments; an int duration from Python (or ``from_params``) is ns."""
    values |= {k: f"{v}ns" if isinstance(v, int) else v for k, v in durations.items() if v is not None}
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"{component_id}: {exc}") from exc


def _edge(frame: pl.DataFrame, order: list[str], row: int) -> tuple[Any, ...]:
    """The sort key of one row, nulls as the smallest int (polars sorts nulls first)."""
    return frame.select(pl.col(order).fill_null(NO_WATERMARK)).row(row)


class _TwoInputs(Operator):
    """What both joins share: telling the inputs apart and dropping late rows."""

    outputs = ("out", "late")
    left: str
    right: str
    late: str = "drop"
    late_counts: dict[str, int]

    async def open(self, ctx: Context) -> None:
        if self.late == "side_output" and not ctx.connected("late"):
            raise MdpError(f"join {ctx.node!r}: late='side_output' needs an edge from port 'late'")

    def side(self, ctx: Context) -> str:
        if ctx.input not in (self.left, self.right):
            raise MdpError(
                f"join {ctx.node!r}: a frame came from input {ctx.input!r}, which is neither the left input "
                f"{self.left!r} nor the right input {self.right!r}; set left/right or the edges' targets"
            )
        return ctx.input

    async def drop_late(self, frame: pl.DataFrame, column: str, side: str, ctx: Context) -> pl.DataFrame:
        """Remove rows behind the watermark: counted, and sent on port ``late`` if asked (left side only)."""
        is_late = pl.col(column) < ctx.watermark
        late = frame.filter(is_late) if ctx.watermark != NO_WATERMARK else frame.clear()
        if late.height == 0:
            return frame
        name = "late_left" if side == self.left else "late_right"
        ctx.count(name, late.height)
        self.late_counts[name] = self.late_counts.get(name, 0) + late.height
        if self.late == "side_output" and side == self.left:
            await ctx.emit(late, "late")
        return frame.filter(~is_late)


class AsofJoin(_TwoInputs):
    """Join each left row to the right row of the same ``by`` key nearest in event time (see module doc).

    Args: as ``AsofJoinParams``; ``time_column`` is not called ``on`` because YAML reads ``on:`` as true,
    and ``tolerance`` from Python is int ns or a duration string.
    """

    Params = AsofJoinParams

    def __init__(
        self,
        left: str = "trades",
        right: str = "quotes",
        by: list[str] | None = None,
        time_column: str = "ts_event",
        strategy: Literal["backward", "forward", "nearest"] = "backward",
        tolerance: int | str | None = None,
        right_columns: list[str] | None = None,
        right_prefix: str = "quote_",
        late: Literal["drop", "side_output"] = "drop",
    ) -> None:
        p = _params(
            AsofJoinParams, "operator.asof_join", {"tolerance": tolerance}, left=left, right=right, by=by,
            time_column=time_column, strategy=strategy, right_columns=right_columns, right_prefix=right_prefix,
            late=late,
        )  # fmt: skip
        self.left, self.right, self.by, self.on = p.left, p.right, p.by, p.time_column
        self.strategy, self.tolerance, self.late = p.strategy, p.tolerance, p.late
        self.right_columns, self.right_prefix = p.right_columns, p.right_prefix
        self._pending: list[tuple[int, pl.DataFrame]] = []  # (oldest ts, trades)
        self._quotes: pl.DataFrame | None = None
        self._new_quotes: list[pl.DataFrame] = []
        self._arrivals = 0
        self.late_counts = {}
        self.joined = self.matched = 0

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        side = self.side(ctx)
        frame = await self.drop_late(frame, self.on, side, ctx)
        if frame.height == 0:
            return
        if side == self.left:
            start, self._arrivals = self._arrivals, self._arrivals + frame.height
            self._hold(frame.with_columns(pl.int_range(start, self._arrivals, dtype=pl.Int64).alias(_I)))
        else:
            keep = dict.fromkeys([*self.by, self.on, *self.right_columns, *(["seq"] if "seq" in frame.columns else [])])
            self._new_quotes.append(frame.select(list(keep)))

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._flush(watermark, ctx)
        await ctx.emit_watermark(min([watermark, *(oldest for oldest, _ in self._pending)]))

    async def on_close(self, ctx: Context) -> None:
        await self._flush(END_OF_TIME, ctx)

    def _merge_quotes(self) -> pl.DataFrame | None:
        """Add the new quotes to the held ones, kept sorted by (time, seq) then arrival."""
        if self._new_quotes:
            new = pl.concat(self._new_quotes, how="vertical_relaxed")
            order = [self.on, "seq"] if "seq" in new.columns else [self.on]
            new, self._new_quotes = new.sort(order, maintain_order=True), []
            held = self._quotes
            merged = new if held is None else pl.concat([held, new], how="vertical_relaxed")
            if held is not None and held.height and _edge(held, order, -1) > _edge(new, order, 0):
                merged = merged.sort(order, maintain_order=True)  # only out-of-order quotes re-sort the held
            self._quotes = merged
        return self._quotes

    async def _flush(self, watermark: int, ctx: Context) -> None:
        quotes = self._merge_quotes()
        # only frames holding a trade below the watermark can have one ready: the rest wait untouched
        due = [f for oldest, f in self._pending if oldest < watermark]
        if due:
            self._pending = [(oldest, f) for oldest, f in self._pending if oldest >= watermark]
            pending = pl.concat(due, how="vertical_relaxed").sort(_I)  # arrival order
            ready = self._ready(pending, quotes, watermark)
            if not ready.all():
                self._hold(pending.filter(~ready))
            out = self._join(pending.filter(ready), quotes)
            if out.height:
                self.joined += out.height
                ctx.count("joined", out.height)
                await ctx.emit(out)
        if quotes is not None:  # keep the last quote per key below the watermark and all quotes above it
            below = pl.col(self.on) < watermark
            old = quotes.filter(below).unique(subset=self.by, keep="last", maintain_order=True)
            self._quotes = pl.concat([old, quotes.filter(~below)])

    def _ready(self, pending: pl.DataFrame, quotes: pl.DataFrame | None, watermark: int) -> pl.Series:
        """Which held trades have their answer settled by ``watermark`` (see the module docstring)."""
        t = pl.col(self.on)
        if watermark >= END_OF_TIME:
            return pending.select(pl.repeat(True, pl.len())).to_series()
        if self.strategy == "backward":
            return pending.select(t < watermark).to_series()
        by_tolerance = pl.repeat(False, pl.len()) if self.tolerance is None else t + self.tolerance < watermark
        ready = pending.select(by_tolerance).to_series()
        if quotes is not None:  # a quote at or after t that is already below the watermark settles it
            known = quotes.filter(t < watermark).select(*self.by, self.on, t.alias(_CAND))
            probe = pending.select(*self.by, self.on, _I).sort(self.on, maintain_order=True)
            cand = probe.join_asof(known, on=self.on, by=self.by, strategy="forward", check_sortedness=False)
            ready = ready | cand.sort(_I).get_column(_CAND).is_not_null()  # pending is in arrival (_I) order
        return ready

    def _join(self, ready: pl.DataFrame, quotes: pl.DataFrame | None) -> pl.DataFrame:
        if ready.height == 0:
            return ready.drop(_I)
        names = {c: self.right_prefix + c if c in ready.columns else c for c in self.right_columns}
        if quotes is None:
            nulls = [pl.lit(None, dtype=QUOTE_SCHEMA.get(c, pl.Null())).alias(n) for c, n in names.items()]
            return ready.sort(_I).drop(_I).with_columns(nulls)
        right = quotes.select(
            *self.by, self.on, *[pl.col(c).alias(n) for c, n in names.items()], pl.lit(1).alias(_CAND)
        )
        out = ready.sort(self.on, maintain_order=True).join_asof(
            right, on=self.on, by=self.by, strategy=self.strategy, tolerance=self.tolerance, check_sortedness=False
        )
        self.matched += out.get_column(_CAND).count()
        return out.sort(_I).drop(_I, _CAND)

    def stats(self) -> dict[str, Any]:
        held = (0 if self._quotes is None else self._quotes.height) + sum(f.height for f in self._new_quotes)
        pending = sum(f.height for _, f in self._pending)
        return dict(joined=self.joined, matched=self.matched, pending=pending, quotes_held=held, **self.late_counts)

    def _hold(self, trades: pl.DataFrame) -> None:
        self._pending.append((int(trades.select(pl.col(self.on).min()).item()), trades))

    def snapshot(self) -> dict[str, Any]:
        """Held left rows and right rows (frames) and the counters."""
        counters = {"joined": self.joined, "matched": self.matched, **self.late_counts}
        pending = [f for _, f in self._pending]
        return dict(pending=pending, quotes=self._merge_quotes(), arrivals=self._arrivals, counters=counters)

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        self._pending = []
        for frame in state["pending"]:
            self._hold(frame)
        self._quotes, self._new_quotes, self._arrivals = state["quotes"], [], state["arrivals"]
        counters = dict(state["counters"])
        self.joined, self.matched = counters.pop("joined"), counters.pop("matched")
        self.late_counts = counters


class WindowJoinParams(BaseModel):
    """Config of ``operator.window_join``."""

    model_config = ConfigDict(extra="forbid")

    left: str = Field(default="left", description="input name of the left side")
    right: str = Field(default="right", description="input name of the right side")
    key: list[str] = Field(default_factory=lambda: ["symbol"], min_length=1, description="key columns to match")
    window: DurationNs = Field(default=1_000_000_000, gt=0, description="tumbling window length")
    offset: DurationNs = Field(default=0, description="windows start at offset + k * window")
    how: Literal["inner", "left"] = Field(default="inner", description="inner, or left (unmatched left rows kept)")
    suffix: str = Field(default="_right", min_length=1, description="suffix of clashing right column names")
    time_column: str = Field(default="ts_event", description="the event-time column of both sides")


class WindowJoin(_TwoInputs):
    """Join left and right rows with equal ``key`` columns in the same tumbling window, when it closes.

    Emits ``window_start``, ``window_end`` and the joined columns (clashing right names get ``suffix``)
    in left arrival order once the watermark reaches the window's end; the watermark sent on is held to
    the start of the open window. Late rows are dropped and counted per side.

    Example::

        >>> import asyncio
        >>> import polars as pl
        >>> from mdp.runtime.graph import Dag, Node
        >>> from mdp.testing import ListSink, ListSource, run_graph
        >>> a = pl.DataFrame({"symbol": ["X", "X", "Y"], "ts_event": [1, 12, 3], "price": [1.0, 2.0, 3.0]})
        >>> b = pl.DataFrame({"symbol": ["X", "Y"], "ts_event": [5, 15], "size": [7.0, 8.0]})
        >>> sink = ListSink()
        >>> dag = Dag().add_node(Node("left", ListSource([a]))).add_node(Node("right", ListSource([b])))
        >>> dag = dag.add_node(Node("j", WindowJoin(window="10ns"))).add_node(Node("sink", sink))
        >>> dag = dag.add_edge("left", "j").add_edge("right", "j").add_edge("j", "sink")
        >>> _ = asyncio.run(run_graph(dag))
        >>> sink.frame.select("window_start", "symbol", "price", "size").rows()
        [(0, 'X', 1.0, 7.0)]
    """

    Params = WindowJoinParams

    def __init__(
        self,
        left: str = "left",
        right: str = "right",
        key: list[str] | None = None,
        window: int | str = "1s",
        offset: int | str = 0,
        how: Literal["inner", "left"] = "inner",
        suffix: str = "_right",
        time_column: str = "ts_event",
    ) -> None:
        p = _params(
            WindowJoinParams, "operator.window_join", {"window": window, "offset": offset}, left=left, right=right,
            key=key, how=how, suffix=suffix, time_column=time_column,
        )  # fmt: skip
        self.left, self.right, self.key, self.how, self.suffix = p.left, p.right, p.key, p.how, p.suffix
        self.window, self.offset, self.time_column = p.window, p.offset, p.time_column
        self._held: dict[str, list[pl.DataFrame]] = {self.left: [], self.right: []}
        self.late_counts = {}
        self.joined = 0

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        side = self.side(ctx)
        frame = await self.drop_late(frame, self.time_column, side, ctx)
        if frame.height:
            window = (pl.col(self.time_column) - self.offset) // self.window
            self._held[side].append(frame.with_columns(window.alias(_W)))

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        closes = (pl.col(_W) + 1) * self.window + self.offset <= watermark
        closed: dict[str, pl.DataFrame | None] = {}
        for side, frames in self._held.items():
            held = pl.concat(frames, how="vertical_relaxed") if frames else None
            closed[side] = None if held is None else held.filter(closes)
            self._held[side] = [] if held is None else [held.filter(~closes)]
        left, right = closed[self.left], closed[self.right]
        if left is not None and left.height and (right is not None or self.how == "left"):
            if right is None:  # nothing ever came from the right: a left join keeps the left rows alone
                out = left
            else:
                out = left.join(right, on=[*self.key, _W], how=self.how, suffix=self.suffix, maintain_order="left")
            if out.height:
                start = pl.col(_W) * self.window + self.offset
                out = out.sort(_W, maintain_order=True).select(
                    start.alias("window_start"), (start + self.window).alias("window_end"), pl.exclude(_W)
                )
                self.joined += out.height
                ctx.count("joined", out.height)
                await ctx.emit(out)
        open_start = self.offset + (watermark - self.offset) // self.window * self.window  # rows ahead start here
        await ctx.emit_watermark(watermark if watermark >= END_OF_TIME else open_start)

    def stats(self) -> dict[str, Any]:
        held = {f"held_{side}": sum(f.height for f in frames) for side, frames in self._held.items()}
        return {"joined": self.joined, **self.late_counts, **held}

    def snapshot(self) -> dict[str, Any]:
        """Rows of the open windows per side (frames) and the counters."""
        held = {side: pl.concat(frames) if frames else None for side, frames in self._held.items()}
        return {"held": held, "joined": self.joined, "late": dict(self.late_counts)}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        self._held = {side: [] if f is None else [f] for side, f in state["held"].items()}
        self.joined, self.late_counts = state["joined"], dict(state["late"])
