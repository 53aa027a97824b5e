"""``ThresholdBars`` (``operator.threshold_bars``): tick, volume and dollar bars per symbol, on event time.

A bar closes when its symbol has traded ``threshold`` trades (``tick``), shares (``volume``) or
``price * size`` (``dollar``) since the previous bar. Trades are taken in ``(ts_event, seq)`` order once
the watermark has passed them (a later on-time trade cannot come before them), so the bars are the
same however the stream was cut and whatever the delivery disorder within the bound.

Splitting, as NautilusTrader's volume and value aggregators do: a trade that crosses the threshold is
split. The part that fills the bar exactly closes it, the rest opens the next bar (and may fill several
bars); a trade that brings the running amount exactly to the threshold closes the bar whole and
nothing of it opens the next. The arithmetic is exact (:mod:`mdp.operators.bars.decimals`): each price and
size counts as the shortest decimal that reads back as its float, amounts are integers in units of
``10^-d`` (``d`` the most decimal places seen), and the threshold is compared with integer running
sums, never float ones. The size of a split part is rounded once from its exact share: the amount
itself for volume bars, ``size * part / value`` for dollar bars. A split trade counts once in
``trades`` of every bar it is part of; its price is an open/high/low/close candidate of each. The
measured amount of a bar (``volume`` of volume bars, ``notional`` of dollar bars) is its exact amount
rounded once (a full bar holds exactly the threshold); the other sums are exact sums of the parts.

Labels: ``timeframe`` is ``tick_100``, ``volume_5000`` or ``dollar_1000000``; ``start`` is the event time
of the bar's first trade and ``end`` one ns after its last, except that bars of a symbol always start
strictly after the previous one (a bar cut from the same trade as its predecessor starts 1 ns after
it), so ``(symbol, timeframe, start)`` stays a key in the stores. Quality follows the one rule of
``docs/event-time.md``: a symbol's first bar is ``partial`` (counting began inside it, so trades
before it that belong to it were not seen); the unfilled bar emitted at end of input is not marked
(like a time window the input ended inside): its amount, below the threshold, shows it. Late trades:
``drop`` or ``side_output`` (``revise`` would shift every later bar: refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any, ClassVar, Final, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mdp.errors import ConfigError, MdpError
from mdp.operators.bars.aggregate import bar_columns, prepare
from mdp.operators.bars.decimals import LIMIT, decimal_value, places_of, scaled, to_float
from mdp.operators.bars.lateness import LATE_PORT, LateRows
from mdp.operators.bars.limbs import from_limbs, limbs
from mdp.operators.bars.quality import BarQuality
from mdp.records import BAR_SCHEMA, END_OF_TIME, PROVISIONAL
from mdp.runtime.operator import NO_WATERMARK, Context, Operator
from mdp.runtime.snapshots import FieldState

ThresholdKind = Literal["tick", "volume", "dollar"]
_CARRY_SCHEMA: Final = {"symbol": pl.String, "__k": pl.Int64, "__fill": pl.Int128, "__last": pl.Int64}
_PIECE_SCHEMA: Final = {
    "symbol": pl.String,
    "ts_event": pl.Int64,
    "seq": pl.Int64,
    "price": pl.Float64,
    "size": pl.Float64,
    "__amt": pl.Int128,
    "__k": pl.Int64,
}
_PIECE_COLUMNS: Final = list(_PIECE_SCHEMA)
_EMPTY_PIECES: Final = pl.DataFrame(schema=_PIECE_SCHEMA)


class ThresholdParams(BaseModel):
    """Config of ``operator.threshold_bars``."""

    model_config = ConfigDict(extra="forbid")

    late_policy: Literal["drop", "side_output"] = Field(
        default="drop",
        description="late rows: 'drop' (counted) or 'side_output' (to port 'late'); a late trade would shift "
        "every later bar, so threshold bars are never revised",
    )
    kind: ThresholdKind = Field(
        default="volume", description="'tick' (trades), 'volume' (size) or 'dollar' (price*size)"
    )
    threshold: float = Field(default=1000.0, gt=0, description="amount that closes a bar: trades, shares or dollars")

    @field_validator("late_policy", mode="before")
    @classmethod
    def _no_revise(cls, value: object) -> object:
        if value == "revise":
            raise ValueError(
                "threshold bars cannot be revised (a late trade would shift every later bar): "
                "use 'drop' or 'side_output'"
            )
        return value

    @model_validator(mode="after")
    def _whole_ticks(self) -> ThresholdParams:
        if self.kind == "tick" and not float(self.threshold).is_integer():
            raise ValueError(f"a tick threshold counts trades: use a whole number, not {self.threshold}")
        return self


class ThresholdBars(FieldState, Operator):
    """Tick, volume or dollar bars per symbol. Keyword arguments: the fields of :class:`ThresholdParams`."""

    Params: ClassVar[type[ThresholdParams]] = ThresholdParams  # type: ignore[misc]
    input_kind: ClassVar[str | None] = "trade"
    output_kind: ClassVar[str | None] = "bar"
    outputs: Sequence[str] = ("out", LATE_PORT)

    CONFIG: ClassVar[frozenset[str]] = frozenset(
        {"params", "kind", "threshold", "label", "_threshold", "_threshold_places"}
    )
    PARTS: ClassVar[tuple[str, ...]] = ("late", "quality")

    def __init__(self, kind: ThresholdKind = "volume", threshold: float = 1000.0, **params: Any) -> None:
        try:
            p = ThresholdParams.model_validate({"kind": kind, "threshold": threshold, **params})
        except ValidationError as exc:
            raise ConfigError(f"invalid operator.threshold_bars params: {exc}") from exc
        self.params = p
        self.kind: ThresholdKind = p.kind
        self.threshold = p.threshold
        amount = int(p.threshold) if float(p.threshold).is_integer() else p.threshold
        self.label = f"{p.kind}_{amount}"
        self.late = LateRows(p.late_policy)
        self.quality = BarQuality(None)
        self._held: list[pl.DataFrame] = []  # on-time rows not yet past the watermark
        self._open = _EMPTY_PIECES  # pieces of each symbol's open (unfilled) bar
        # per symbol: the number of its open bar, the exact amount in it, and its newest bar's start
        self._carry = pl.DataFrame(schema=_CARRY_SCHEMA)
        self._threshold = decimal_value(p.threshold)
        self._threshold_places = places_of(p.threshold)
        self._digits = 0  # amounts count units of 10^-digits (raised when finer values come)
        self._aside: list[pl.DataFrame] = []  # trades the watermark passed that cannot fill a bar yet
        self._aside_amount = 0.0  # their amount, in floats (only to decide whether to wait)
        self._fullest = 0.0  # the largest amount in a symbol's open bar, as a float
        self._arrived = 0
        self.bars_emitted = 0

    def port_kind(self, port: str) -> str | None:
        return "trade" if port == LATE_PORT else "bar"

    def bar_grid(self) -> None:
        """None: threshold bars have no fixed length (a bars of bars downstream refuses them)."""
        return None

    def stats(self) -> dict[str, Any]:
        return {"bars_emitted": self.bars_emitted, **self.late.stats()}

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        rows = prepare(frame, self._arrived)
        self._arrived += frame.height
        if ctx.watermark > NO_WATERMARK:
            late = rows.get_column("ts_event") < ctx.watermark
            if late.any():
                self.late.seen(rows.filter(late), ctx)
                await self.late.reject(late.arg_true(), frame, ctx)
                rows = rows.filter(~late)
        if rows.height:
            self._held.append(rows)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._emit(self.advance(watermark), ctx)
        await ctx.emit_watermark(watermark)

    async def on_close(self, ctx: Context) -> None:
        await self._emit(self.advance(END_OF_TIME, final=True), ctx)

    async def _emit(self, bars: pl.DataFrame | None, ctx: Context) -> None:
        if bars is not None and bars.height:
            ctx.count("bars_emitted", bars.height)
            await ctx.emit(bars)

    def advance(self, watermark: int, final: bool = False) -> pl.DataFrame | None:
        """Cut bars from the trades the watermark has passed; with ``final`` also each unfilled bar."""
        ready: pl.DataFrame | None = None
        if self._held:
            held = self._held[0] if len(self._held) == 1 else pl.concat(self._held, how="vertical")
            passed = held.get_column("ts_event").to_numpy() < watermark
            if passed.all():
                ready, self._held = held, []
            elif passed.any():
                mask = pl.Series(passed)
                ready, self._held = held.filter(mask), [held.filter(~mask)]
            else:
                self._held = [held]
        ready = self._unless_nothing_fills(ready, final)
        pieces = self._pieces(ready) if ready is not None and ready.height else None
        if pieces is None and not final:
            return None  # no trade taken: no bar can have filled
        parts = [p for p in (self._open, pieces) if p is not None and p.height]
        if not parts:
            return None
        allp = pl.concat(parts, how="vertical").join(
            self._carry.select("symbol", pl.col("__k").alias("__open_k")), on="symbol", how="left"
        )
        filled = pl.col("__k") < pl.col("__open_k")  # bars before the symbol's open one are full
        done = allp if final else allp.filter(filled)
        self._open = _EMPTY_PIECES if final else allp.filter(~filled).drop("__open_k")
        if done.height == 0:
            return None
        bars = self._bars(done)
        if final:  # each symbol's unfilled bar (its newest): no threshold closed it, the input ended
            unfilled = allp.filter(~filled).get_column("symbol").unique().implode()
            newest = (pl.col("start") == pl.col("start").max().over("symbol")) & pl.col("symbol").is_in(unfilled)
            bars = bars.with_columns(
                pl.when(newest).then(pl.lit(PROVISIONAL)).otherwise(pl.col("quality")).alias("quality")
            )
        self.bars_emitted += bars.height
        return bars

    def _unless_nothing_fills(self, ready: pl.DataFrame | None, final: bool) -> pl.DataFrame | None:
        """``ready`` with the rows put aside before it, or None (kept aside) while no bar can fill yet.

        Cutting costs a few polars queries, and a watermark usually passes a few trades that fill
        nothing: while the float amount of every trade put aside (with a wide margin for rounding) and
        the fullest open bar stay below the threshold, no symbol's bar can fill, so the rows wait. The
        decision itself is then made exactly, on all of them in event order.
        """
        if ready is not None and ready.height:
            self._aside.append(ready)
            if self.kind == "tick":
                amount = float(ready.height)
            else:
                size = np.abs(ready.get_column("size").to_numpy())
                amount = float(
                    (size if self.kind == "volume" else size * np.abs(ready.get_column("price").to_numpy())).sum()
                )
            self._aside_amount += amount
        if not self._aside:
            return None
        if not final and (self._aside_amount + self._fullest) * (1 + 1e-6) < float(self._threshold):
            return None
        rows = pl.concat(self._aside, how="vertical")
        self._aside, self._aside_amount = [], 0.0
        return rows

    def _rescale(self, digits: int) -> None:
        """Count the carried amounts in units of ``10^-digits`` from now on (``digits`` only grows)."""
        if digits <= self._digits:
            return
        factor = pl.lit(10 ** (digits - self._digits), pl.Int128)
        self._carry = self._carry.with_columns(pl.col("__fill") * factor)
        if self._open.height:
            self._open = self._open.with_columns(pl.col("__amt") * factor)
        self._digits = digits

    def _units(self, rows: pl.DataFrame) -> pl.Series:
        """Each trade's measure as an exact Int128 count of ``10^-digits`` (``digits`` raised as needed)."""
        if self.kind == "tick":
            units, digits = pl.Series("units", [1] * rows.height, dtype=pl.Int128), 0
        elif self.kind == "volume":
            units, digits = scaled(rows.get_column("size").to_numpy())
        else:  # dollar: price x size, exact as the product of the two decimals
            price, dp = scaled(rows.get_column("price").to_numpy())
            size, ds = scaled(rows.get_column("size").to_numpy())
            _check_fits(_largest(price) * _largest(size))
            units, digits = price * size, dp + ds
        self._rescale(max(digits, self._threshold_places))
        factor = 10 ** (self._digits - digits)
        # the running totals of a batch stay below the threshold plus the batch's amounts
        _check_fits(float(self._threshold) * 10.0**self._digits + rows.height * _largest(units) * factor)
        if factor > 1:
            units = units * pl.Series([factor], dtype=pl.Int128)
        return units.alias("__m")

    def _pieces(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Each trade cut at the bar boundaries it crosses, with its bar number ``__k`` and exact amount
        ``__amt``; the carry moves on to each symbol's open bar."""
        ordered = rows.sort("symbol", "ts_event", "seq")
        m = self._units(ordered)
        t = pl.lit(int(self._threshold * 10**self._digits), pl.Int128)
        ordered = ordered.with_columns(m).join(self._carry, on="symbol", how="left", maintain_order="left")
        ordered = ordered.with_columns(pl.col("__k").fill_null(0), pl.col("__fill").fill_null(0))
        after = (pl.col("__fill") + pl.col("__m").cum_sum().over("symbol")).alias("__after")
        ordered = ordered.with_columns(after).with_columns((pl.col("__after") - pl.col("__m")).alias("__before"))
        first = pl.col("__before") // t
        last = pl.max_horizontal(first, (pl.col("__after") + t - 1) // t - 1)  # ceil(after / t) - 1
        pieces = ordered.with_columns(
            pl.int_ranges(first.cast(pl.Int64), last.cast(pl.Int64) + 1).alias("__j")
        ).explode("__j")
        j = pl.col("__j").cast(pl.Int128)
        part = pl.min_horizontal("__after", (j + 1) * t) - pl.max_horizontal("__before", j * t)
        pieces = pieces.with_columns(part.alias("__amt"), (pl.col("__k") + pl.col("__j")).alias("__k"))
        pieces = self._split_sizes(pieces)
        totals = ordered.group_by("symbol").agg(pl.col("__k").first(), pl.col("__after").last())
        carry = totals.select(
            "symbol",
            (pl.col("__k") + (pl.col("__after") // t).cast(pl.Int64)).alias("__k"),
            (pl.col("__after") % t).alias("__fill"),
        )
        merged = self._carry.join(carry, on="symbol", how="full", coalesce=True, suffix="__new")
        self._carry = merged.select(
            "symbol",
            pl.coalesce("__k__new", "__k").alias("__k"),
            pl.coalesce("__fill__new", "__fill").alias("__fill"),
            "__last",
        )
        fullest = self._carry.get_column("__fill").max()
        self._fullest = to_float(int(fullest), self._digits) if fullest is not None else 0.0  # type: ignore[arg-type]
        return pieces.select(_PIECE_COLUMNS)

    def _split_sizes(self, pieces: pl.DataFrame) -> pl.DataFrame:
        """The size of each piece of a split trade, exactly rounded from its share of the trade.

        A piece that is the whole trade keeps its size. A piece of a volume bar is its amount; a piece
        of a dollar bar is ``size * amount / value``; both rounded once from the exact fraction, so the
        result is the same whatever scale the amounts were counted in.
        """
        split = pl.col("__amt") != pl.col("__m")
        if self.kind == "tick" or not pieces.select(split.any()).item():
            return pieces
        idx = pieces.with_row_index("__i").filter(split)
        sizes = pieces.get_column("size").to_list()
        for i, size, amt, whole in idx.select("__i", "size", "__amt", "__m").iter_rows():  # split trades: few
            if self.kind == "volume":
                sizes[i] = to_float(amt, self._digits)
            else:
                sizes[i] = float(decimal_value(size) * Fraction(amt, whole)) if whole else 0.0
        return pieces.with_columns(pl.Series("size", sizes, dtype=pl.Float64))

    def _bars(self, pieces: pl.DataFrame) -> pl.DataFrame:
        exact = "volume" if self.kind == "volume" else "notional" if self.kind == "dollar" else None
        bars = (
            pieces.sort("symbol", "__k", "ts_event", "seq")
            .group_by("symbol", "__k", maintain_order=True)
            .agg(
                pl.col("ts_event").first().alias("__first"),
                (pl.col("ts_event").last() + 1).alias("end"),
                pl.col("price").first().alias("open"),
                pl.col("price").max().alias("high"),
                pl.col("price").min().alias("low"),
                pl.col("price").last().alias("close"),
                *limbs(pl.col("size"), "volume"),
                *limbs(pl.col("price") * pl.col("size"), "notional"),
                pl.col("__amt").sum().alias("__amount"),
                pl.len().cast(pl.Int64).alias("trades"),
            )
            .with_columns(from_limbs("volume").alias("volume"), from_limbs("notional").alias("notional"))
            .join(self._carry.select("symbol", "__last"), on="symbol", how="left")
        )
        if exact is not None:  # the measured amount, exact: a full volume bar holds exactly the threshold
            amounts = [to_float(a, self._digits) for a in bars.get_column("__amount").to_list()]
            bars = bars.with_columns(pl.Series(exact, amounts, dtype=pl.Float64))
        # start_k = max(first_k, start_{k-1} + 1): cummax of (first - k), plus k, carried per symbol
        rank = pl.int_range(pl.len()).over("symbol")
        base = pl.max_horizontal(
            (pl.col("__first") - rank).cum_max().over("symbol"), pl.col("__last").fill_null(-(2**62)) + 1
        )
        bars = bars.with_columns((base + rank).alias("start"))
        bars = bars.with_columns(pl.max_horizontal("end", pl.col("start") + 1).alias("end"))
        self._set_last(bars.group_by("symbol").agg(pl.col("start").max()))
        out = bars.select(bar_columns(self.label, pl.lit(0, pl.Int64), pl.lit("complete", pl.String)))
        # the quality rule: a symbol's first bar is partial (counting began inside it)
        return self.quality.apply(out.cast(BAR_SCHEMA)).sort("start", "symbol")  # type: ignore[arg-type]

    def _set_last(self, starts: pl.DataFrame) -> None:
        """Record each symbol's newest bar start (bars of a symbol start strictly after it)."""
        merged = self._carry.join(starts.select("symbol", pl.col("start").alias("__new")), on="symbol", how="left")
        self._carry = merged.with_columns(pl.coalesce("__new", "__last").alias("__last")).drop("__new")


def _largest(units: pl.Series) -> float:
    """The largest magnitude in an integer column, as a float (0 when empty)."""
    top = units.abs().max()
    return float(top) if isinstance(top, int) else 0.0


def _check_fits(magnitude: float) -> None:
    """Refuse amounts an Int128 running sum could overflow (about 2^120 units)."""
    if magnitude >= LIMIT:
        raise MdpError(
            "operator.threshold_bars: trade amounts need more decimal digits than exact sums can hold; "
            "round prices and sizes to fewer decimal places at the source"
        )


__all__ = ["ThresholdBars", "ThresholdParams"]
