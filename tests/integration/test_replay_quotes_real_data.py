"""ReplaySource as quotes on the real Binance bookTicker file in ../shared/data/real (see its README).

Spot bookTicker messages carry no exchange time, so ``ts_event`` falls back to the receive time (ns)
where ``transact_ts_ms`` is empty: ``ts_fallback`` reads it in its own unit. The collector's clock ran
about 1.2-1.3 s behind Binance's, so the mixed stream needs a watermark bound of that size (2 s here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mdp.records import END_OF_TIME, QUOTE_SCHEMA
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import NO_WATERMARK, Context
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph

pytestmark = pytest.mark.services

FILE = "binance_hftbacktest_bookticker.csv.gz"
COLUMNS = {
    "ts_event": "transact_ts_ms",
    "ts_recv": "recv_ts_ns",
    "symbol": "{venue}:{symbol}",
    "bid": "bid_price",
    "bid_size": "bid_qty",
    "ask": "ask_price",
    "ask_size": "ask_qty",
    "seq": "update_id",
}
#: rows per instrument, from the README
COUNTS = {
    "binance-coinm:BTCUSD_PERP": 48_355,
    "binance-coinm:ETHUSD_PERP": 35_563,
    "binance-spot:BTCUSDT": 73_174,
    "binance-spot:ETHUSDT": 58_758,
    "binance-usdm:BTCUSDT": 66_089,
    "binance-usdm:ETHUSDT": 53_992,
}
ROWS = 335_931


class LatenessSink(ListSink):
    """A ListSink that also counts rows older than the watermark in force when they arrive."""

    late = 0

    async def on_item(self, item: Any, ctx: Context) -> None:
        await super().on_item(item, ctx)
        if ctx.watermark > NO_WATERMARK:
            self.late += int((item.get_column("ts_event") < ctx.watermark).sum())


async def replay_quotes(path: Path) -> tuple[ReplaySource, LatenessSink, ListSink]:
    source = ReplaySource(
        path=path,
        kind="quote",
        columns=COLUMNS,
        ts_unit="ms",
        ts_recv_unit="ns",
        ts_fallback="recv_ts_ns",
        ts_fallback_unit="ns",
        max_out_of_orderness="2s",
        frame_rows=50_000,
    )
    sink, dead = LatenessSink(), ListSink()
    dag = Dag().add_node(Node("quotes", source)).add_node(Node("sink", sink)).add_node(Node("dead", dead))
    dag.add_edge("quotes", "sink").add_edge("quotes", "dead", port="deadletter")
    await run_graph(dag, timeout=120)
    return source, sink, dead


async def test_the_bookticker_file_replays_every_row_as_a_quote(shared_data: Path) -> None:
    source, sink, dead = await replay_quotes(shared_data / FILE)
    out = sink.frame
    assert out.schema == pl.Schema(QUOTE_SCHEMA)
    assert out.height == ROWS
    assert dead.items == []
    assert source.stats() == {"rows_emitted": ROWS, "offset": ROWS, "bad_records": 0, "bad_reasons": {}}
    assert dict(out.group_by("symbol").len().iter_rows()) == COUNTS
    assert (out["bid"] <= out["ask"]).all()  # none crossed
    assert out.null_count().row(0) == (0,) * len(QUOTE_SCHEMA)
    first = out.row(0, named=True)
    assert first == {
        "symbol": "binance-spot:ETHUSDT",
        "ts_event": 1_723_161_254_024_619_568,  # a spot row: the receive time, in ns
        "bid": 2683.8,
        "bid_size": 3.0292,
        "ask": 2683.81,
        "ask_size": 31.4395,
        "ts_recv": 1_723_161_254_024_619_568,
        "seq": 35_346_513_501,
    }
    assert sink.watermarks == sorted(sink.watermarks)
    assert sink.watermarks[-1] == END_OF_TIME
    assert sink.late == 0  # the 2 s bound absorbs the collector's clock skew


async def test_update_ids_increase_strictly_per_instrument_in_file_order(shared_data: Path) -> None:
    _, sink, _ = await replay_quotes(shared_data / FILE)
    steps = sink.frame.select(pl.col("seq").diff().over("symbol").alias("step"))["step"].drop_nulls()
    assert steps.min() > 0


async def test_futures_take_the_exchange_time_in_ms_and_spot_the_receive_time(shared_data: Path) -> None:
    _, sink, _ = await replay_quotes(shared_data / FILE)
    raw = pl.read_csv(shared_data / FILE, schema_overrides={"transact_ts_ms": pl.Int64, "event_ts_ms": pl.Int64})
    expected = pl.coalesce(pl.col("transact_ts_ms") * 1_000_000, pl.col("recv_ts_ns"))
    assert sink.frame["ts_event"].to_list() == raw.select(expected)["transact_ts_ms"].to_list()
    spot = sink.frame.filter(pl.col("symbol").str.starts_with("binance-spot"))
    assert spot["ts_event"].equals(spot["ts_recv"].alias("ts_event"))
    futures = sink.frame.filter(~pl.col("symbol").str.starts_with("binance-spot"))
    assert (futures["ts_event"] % 1_000_000 == 0).all()
