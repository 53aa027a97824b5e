"""``operator.threshold_bars`` on the real Binance trades equals a reference computed with ``Fraction``.

The reference reads prices and sizes as the decimal strings of the file and applies the split rule of
``docs/event-time.md`` in exact rational arithmetic, one trade at a time. Every bar must match: the
trades it holds, open/high/low/close, ``start``/``end``, and the measured amount exactly (a full
volume bar holds exactly the threshold). Issue 15: with float running sums the ``binance-usdm:ETHUSDT``
bar at 1723161297904000000 (threshold 90) took a sliver of the next trade, and a ``binance-spot:ETHUSDT``
bar (threshold 40) held 148 trades instead of 147; cut into 7-row frames, a spurious 1-trade bar
appeared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

from mdp.operators.bars.threshold import ThresholdBars
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.testing import ListSink, run_graph

pytestmark = pytest.mark.services

BOUND = 5_000_000_000


def read_raw(folder: Path) -> pl.DataFrame:
    """The trade file with prices and sizes kept as their decimal strings, in file (arrival) order."""
    raw = pl.read_csv(
        folder / "binance_hftbacktest_trades.csv.gz", schema_overrides={"price": pl.String, "qty": pl.String}
    )
    return raw.select(
        (pl.col("venue") + ":" + pl.col("symbol")).alias("symbol"),
        (pl.col("trade_ts_ms") * 1_000_000).alias("ts_event"),
        pl.col("price").alias("price_text"),
        pl.col("qty").alias("size_text"),
        pl.col("trade_id"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("seq"),
    )


def as_trades(raw: pl.DataFrame) -> pl.DataFrame:
    frame = raw.select(
        "symbol",
        "ts_event",
        pl.col("price_text").cast(pl.Float64).alias("price"),
        pl.col("size_text").cast(pl.Float64).alias("size"),
        "seq",
    )
    return conform(frame, "trade")


@dataclass
class RefBar:
    start: int
    end: int
    prices: list[Fraction] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    amount: Fraction = Fraction(0)


def reference(raw: pl.DataFrame, kind: str, threshold: Fraction) -> dict[str, list[RefBar]]:
    """Bars per symbol by the documented split rule, in exact fractions, one trade at a time."""
    out: dict[str, list[RefBar]] = {}
    ordered = raw.sort("symbol", "ts_event", "seq")
    for symbol, ts, price_text, size_text, trade_id in ordered.select(
        "symbol", "ts_event", "price_text", "size_text", "trade_id"
    ).iter_rows():
        bars = out.setdefault(symbol, [])
        price, size = Fraction(price_text), Fraction(size_text)
        left = {"tick": Fraction(1), "volume": size, "dollar": price * size}[kind]
        while True:
            if not bars or bars[-1].amount == threshold:  # open a bar: starts after the previous one
                start = ts if not bars else max(ts, bars[-1].start + 1)
                bars.append(RefBar(start, start))
            bar = bars[-1]
            part = min(left, threshold - bar.amount)
            bar.amount += part
            bar.prices.append(price)
            bar.ids.append(trade_id)
            bar.end = max(ts + 1, bar.start + 1)
            left -= part
            if left == 0:
                break
    return out


class FrameSource(Source):
    """Send a frame cut into ``frame_rows`` pieces behind bounded-out-of-orderness watermarks."""

    def __init__(self, trades: pl.DataFrame, frame_rows: int) -> None:
        self.trades, self.frame_rows = trades, frame_rows

    async def run(self, ctx: Context) -> None:
        tracker = WatermarkTracker(BOUND)
        for offset in range(0, self.trades.height, self.frame_rows):
            await emit_with_watermarks(ctx, self.trades.slice(offset, self.frame_rows), tracker)


async def stream(trades: pl.DataFrame, frame_rows: int, kind: str, threshold: float) -> pl.DataFrame:
    sink, op = ListSink(), ThresholdBars(kind=kind, threshold=threshold)  # type: ignore[arg-type]
    dag = Dag().add_node(Node("trades", FrameSource(trades, frame_rows))).add_node(Node("bars", op))
    dag.add_node(Node("sink", sink)).add_edge("trades", "bars").add_edge("bars", "sink")
    await run_graph(dag)
    assert op.late.late_rows == 0
    return sink.frame.sort("symbol", "start")


def check(bars: pl.DataFrame, want: dict[str, list[RefBar]], kind: str) -> None:
    """Every bar of ``bars`` equals the reference's, field by field."""
    for symbol, ref in want.items():
        got = bars.filter(pl.col("symbol") == symbol)
        assert got.height == len(ref), symbol
        measured = {"tick": "trades", "volume": "volume", "dollar": "notional"}[kind]
        for row, r in zip(got.iter_rows(named=True), ref, strict=True):
            assert (row["start"], row["end"], row["trades"]) == (r.start, r.end, len(r.ids)), (symbol, r.start)
            ohlc = (row["open"], row["high"], row["low"], row["close"])
            assert ohlc == tuple(float(p) for p in (r.prices[0], max(r.prices), min(r.prices), r.prices[-1]))
            assert row[measured] == float(r.amount), (symbol, r.start)


async def test_volume_bars_end_on_the_trade_that_fills_them_exactly(shared_data: Path) -> None:
    raw = read_raw(shared_data)
    bars = await stream(as_trades(raw), 65_536, "volume", 90)
    want = reference(raw, "volume", Fraction(90))
    check(bars, want, "volume")
    # the bar: filled exactly by trade 4308069960 (8 x 90 since the first trade), 155 trades
    bar = next(b for b in want["binance-usdm:ETHUSDT"] if b.start == 1723161297904000000)
    assert (bar.ids[-1], len(bar.ids), bar.prices[-1]) == (4308069960, 155, Fraction("2681.78"))
    got = bars.filter((pl.col("symbol") == "binance-usdm:ETHUSDT") & (pl.col("start") == 1723161297904000000))
    assert got.select("trades", "close", "volume").row(0) == (155, 2681.78, 90.0)


async def test_volume_bars_count_the_running_total_exactly_not_in_floats(shared_data: Path) -> None:
    raw = read_raw(shared_data)
    bars = await stream(as_trades(raw), 65_536, "volume", 40)
    want = reference(raw, "volume", Fraction(40))
    check(bars, want, "volume")
    spot = bars.filter(pl.col("symbol") == "binance-spot:ETHUSDT")
    full = spot.filter(pl.col("volume") == 40.0)
    assert full.height == spot.height - 1, "every spot ETHUSDT bar but the unfilled last holds exactly 40"
    assert 147 in spot.get_column("trades").to_list()


@pytest.mark.parametrize("frame_rows", [65_536, 997, 100, 7])
async def test_threshold_bars_of_real_trades_do_not_depend_on_the_frame_cuts(
    shared_data: Path, frame_rows: int
) -> None:
    symbols = ["binance-usdm:ETHUSDT"] if frame_rows < 100 else ["binance-usdm:ETHUSDT", "binance-spot:ETHUSDT"]
    raw = read_raw(shared_data).filter(pl.col("symbol").is_in(symbols))
    want = reference(raw, "volume", Fraction(90))
    check(await stream(as_trades(raw), frame_rows, "volume", 90), want, "volume")


@pytest.mark.parametrize(("kind", "threshold"), [("dollar", 1_000_000), ("dollar", 1_234_567.89), ("tick", 50)])
async def test_dollar_and_tick_bars_of_real_trades_equal_the_fraction_reference(
    shared_data: Path, kind: str, threshold: float
) -> None:
    raw = read_raw(shared_data)
    want = reference(raw, kind, Fraction(str(threshold)))
    check(await stream(as_trades(raw), 8_192, kind, threshold), want, kind)
