"""``operator.bars`` on real Binance trades matches the independently computed 1-minute bars.

The trades file (../shared/data/real, see its README) is in arrival order with up to 214 ms of
cross-instrument disorder, so 5 s watermarks judge no row late and all 78,638 trades count. The
expected file was written from exact decimals: prices and volumes must match exactly, vwap and
notional to 1e-9 relative.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from mdp.operators.bars import BarsOperator
from mdp.records import BAR_SCHEMA, conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.testing import ListSink, run_graph

pytestmark = pytest.mark.services

BOUND = 5_000_000_000


def read_trades(folder: Path) -> pl.DataFrame:
    """The Binance trade file as a canonical trade frame, in file (arrival) order."""
    raw = pl.read_csv(folder / "binance_hftbacktest_trades.csv.gz")
    frame = raw.select(
        (pl.col("venue") + ":" + pl.col("symbol")).alias("symbol"),
        (pl.col("trade_ts_ms") * 1_000_000).alias("ts_event"),
        pl.col("price"),
        pl.col("qty").alias("size"),
        pl.col("recv_ts_ns").alias("ts_recv"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("seq"),
        pl.col("trade_id").cast(pl.String),
        pl.col("venue"),
    )
    return conform(frame, "trade")


class FrameSource(Source):
    """Send a frame cut into ``frame_rows`` pieces behind bounded-out-of-orderness watermarks."""

    def __init__(self, trades: pl.DataFrame, frame_rows: int) -> None:
        self.trades, self.frame_rows = trades, frame_rows

    async def run(self, ctx: Context) -> None:
        tracker = WatermarkTracker(BOUND)
        for offset in range(0, self.trades.height, self.frame_rows):
            await emit_with_watermarks(ctx, self.trades.slice(offset, self.frame_rows), tracker)


@pytest.mark.parametrize("frame_rows", [997, 8_192, 100_000])
async def test_streamed_bars_match_the_expected_binance_bars(shared_data: Path, frame_rows: int) -> None:
    trades = read_trades(shared_data)
    assert trades.height == 78_638
    sink, bars_op = ListSink(), BarsOperator(timeframe="1m")
    dag = Dag()
    dag.add_node(Node("trades", FrameSource(trades, frame_rows)))
    dag.add_node(Node("bars", bars_op))
    dag.add_node(Node("sink", sink))
    dag.add_edge("trades", "bars").add_edge("bars", "sink")
    stats = await run_graph(dag)

    bars = sink.frame
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.select("start", "symbol").rows() == sorted(bars.select("start", "symbol").rows())
    assert bars_op.late_rows == 0
    assert stats.counter("late_rows") == 0

    expected = pl.read_csv(shared_data / "binance_hftbacktest_trades.bars_1m.expected.csv.gz")
    assert expected.height == 61
    got = bars.sort("symbol", "start")
    assert got.height == 61
    assert got.select("symbol", "start").rows() == expected.select("symbol", "bar_start_ns").rows()
    assert (got.get_column("end") - got.get_column("start")).unique().to_list() == [60_000_000_000]
    assert set(got.get_column("timeframe")) == {"1m"}
    exact = ["open", "high", "low", "close", "volume"]
    assert got.select(exact).rows() == expected.select(exact).rows()
    assert got.get_column("trades").to_list() == expected.get_column("trade_count").to_list()
    for column in ("vwap", "notional"):
        for value, want in zip(got.get_column(column), expected.get_column(column), strict=True):
            assert math.isclose(value, want, rel_tol=1e-9), (column, value, want)
