"""ReplaySource on the real Binance trade file in ../shared/data/real (see its README for the figures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mdp.records import END_OF_TIME, TRADE_SCHEMA
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import NO_WATERMARK, Context, Sink
from mdp.sources.replay import ReplaySource
from mdp.testing import run_graph

pytestmark = pytest.mark.services

COLUMNS = {
    "ts_event": "trade_ts_ms",
    "symbol": "{venue}:{symbol}",
    "price": "price",
    "size": "qty",
    "trade_id": "trade_id",
}
#: trades per instrument, from the README's table
COUNTS = {
    "binance-coinm:BTCUSD_PERP": 5_235,
    "binance-coinm:ETHUSD_PERP": 3_595,
    "binance-spot:BTCUSDT": 19_904,
    "binance-spot:ETHUSDT": 14_515,
    "binance-usdm:BTCUSDT": 21_313,
    "binance-usdm:ETHUSDT": 14_076,
}


class LatenessSink(Sink):
    """Collect frames and count rows older than the watermark in force when they arrive."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.watermarks: list[int] = []
        self.late = 0

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.frames.append(item)
        if ctx.watermark > NO_WATERMARK:
            self.late += int((item.get_column("ts_event") < ctx.watermark).sum())

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        self.watermarks.append(watermark)


async def replay(path: Path, bound: str, frame_rows: int = 65_536) -> LatenessSink:
    sink = LatenessSink()
    source = ReplaySource(path=path, columns=COLUMNS, ts_unit="ms", max_out_of_orderness=bound, frame_rows=frame_rows)
    dag = Dag()
    dag.add_node(Node("replay", source)).add_node(Node("sink", sink)).add_edge("replay", "sink")
    await run_graph(dag)
    assert source.stats() == {"rows_emitted": 78_638, "offset": 78_638, "bad_records": 0, "bad_reasons": {}}
    return sink


async def test_the_binance_trade_file_replays_every_row_in_file_order(shared_data: Path) -> None:
    sink = await replay(shared_data / "binance_hftbacktest_trades.csv.gz", "250ms")
    out = pl.concat(sink.frames)
    assert out.schema == pl.Schema(TRADE_SCHEMA)
    assert out.height == 78_638
    assert dict(out.group_by("symbol").len().iter_rows()) == COUNTS
    assert out["seq"].to_list() == list(range(78_638))
    first = out.row(0, named=True)
    assert first["symbol"] == "binance-spot:BTCUSDT"
    assert first["ts_event"] == 1_723_161_255_342_000_000
    assert first["price"] == 61837.63
    assert first["size"] == 0.02
    assert first["trade_id"] == "3735683259"
    assert first["venue"] == "binance-spot"  # the file's own 'venue' column, taken by name
    assert out["ts_recv"].null_count() == out.height


async def test_trade_ids_increase_within_each_instrument_in_file_order(shared_data: Path) -> None:
    out = pl.concat((await replay(shared_data / "binance_hftbacktest_trades.csv.gz", "250ms", 5_000)).frames)
    steps = out.select(pl.col("trade_id").cast(pl.Int64).diff().over("symbol").alias("step"))["step"].drop_nulls()
    assert steps.min() == 1
    assert steps.max() == 1


async def test_the_readme_disorder_is_absorbed_by_a_250ms_bound_and_counted_without_one(shared_data: Path) -> None:
    path = shared_data / "binance_hftbacktest_trades.csv.gz"
    bounded = await replay(path, "250ms")
    assert bounded.late == 0
    assert bounded.watermarks == sorted(bounded.watermarks)
    assert bounded.watermarks[-1] == END_OF_TIME
    unbounded = await replay(path, "0s", frame_rows=1_000)
    assert unbounded.late == 19_643  # trades behind an already received one of another instrument
