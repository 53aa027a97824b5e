"""DBN replay (issue 24): symbology over days, dead letters, kinds, resume, and OHLCV bars into bars of bars.

Every DBN file here is written by the test with ``databento-dbn``'s encoder (:mod:`mdp.testing.dbn`)
from seeded synthetic frames.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.clock import ManualClock
from mdp.errors import SourceError
from mdp.operators.bars import BarsOperator
from mdp.operators.bars.rebar import Rebar
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Operator, Source
from mdp.runtime.watermarks import WatermarkTracker, emit_with_watermarks
from mdp.sources.dbn_bars import DbnBarsSource
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph
from mdp.testing.dbn import synthetic_trades, write_dbn
from tests.unit.test_source_snapshots import check_round_trip

DAY = 86_400_000_000_000


def _read(source: ReplaySource) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good rows and dead letters of a whole file, on a clock in 2030."""
    ctx = SimpleNamespace(clock=ManualClock(1_900_000_000_000_000_000), node="dbn")
    good, bad = [], []
    for item in source.frames(source.plan(), source.screen(ctx)):  # type: ignore[arg-type]
        if isinstance(item, pl.DataFrame):
            good.append(item)
        else:
            bad.append(item.frame)
    return pl.concat(good), (pl.concat(bad) if bad else pl.DataFrame())


def test_symbols_follow_a_mapping_that_changes_from_day_to_day(tmp_path: Path) -> None:
    trades = synthetic_trades(5_000, symbols=4, span_ns=3 * DAY)
    path = write_dbn(tmp_path / "t.dbn.zst", trades, "trades", size_decimals=3, remap=True)
    import databento

    ids = databento.DBNStore.from_file(path).to_ndarray()["instrument_id"]
    by_day = pl.DataFrame({"symbol": trades["symbol"], "id": ids, "day": trades["ts_recv"] // DAY}).unique()
    assert by_day.group_by("symbol").agg(pl.col("id").n_unique()).get_column("id").min() > 1  # ids do move
    good, bad = _read(ReplaySource(path=path, size_decimals=3, min_event_time=None))
    assert bad.height == 0
    assert good.get_column("symbol").to_list() == trades.get_column("symbol").to_list()
    assert good.get_column("price").to_list() == trades.get_column("price").to_list()  # exact, from 1e-9 fixed point
    assert good.get_column("size").to_list() == trades.get_column("size").to_list()
    assert good.get_column("ts_recv").to_list() == trades.get_column("ts_recv").to_list()


def test_an_instrument_the_symbology_does_not_name_is_a_dead_letter(tmp_path: Path) -> None:
    trades = synthetic_trades(2_000, symbols=4)
    path = write_dbn(tmp_path / "t.dbn", trades, "trades", size_decimals=3, unmapped=frozenset({"SYM02"}))
    good, bad = _read(ReplaySource(path=path, size_decimals=3, max_bad_share=None))
    missing = trades.filter(pl.col("symbol") == "SYM02").height
    assert missing > 0
    assert bad.height == missing
    assert set(bad.get_column("reason")) == {"missing_symbol"}
    assert good.height == trades.height - missing
    assert "SYM02" not in good.get_column("symbol").to_list()


def test_the_kind_must_match_the_schema(tmp_path: Path) -> None:
    path = write_dbn(tmp_path / "t.dbn", synthetic_trades(10), "trades")
    with pytest.raises(SourceError, match=r"which are trades; set params\.kind: trade"):
        ReplaySource(path=path, kind="quote").plan()
    with pytest.raises(SourceError, match=r"source\.replay"):
        DbnBarsSource(path=str(path), size_decimals=3).open_file()
    (tmp_path / "x.dbn").write_bytes(b"not dbn at all")
    with pytest.raises(SourceError, match=r"cannot read .* as DBN"):
        ReplaySource(path=tmp_path / "x.dbn").plan()


@pytest.mark.parametrize("cut", [0.2, 0.5, 0.9])
def test_dbn_replay_resumes_exactly_where_it_stopped(tmp_path: Path, cut: float) -> None:
    path = write_dbn(
        tmp_path / "t.dbn.zst",
        synthetic_trades(3_000, symbols=3),
        "trades",
        size_decimals=3,
        unmapped=frozenset({"SYM01"}),
    )
    check_round_trip(
        lambda: ReplaySource(path=path, size_decimals=3, frame_rows=257, max_bad_share=None, max_out_of_orderness="1s"),
        cut,
    )


@pytest.mark.parametrize("cut", [0.3, 0.7])
def test_dbn_bars_resume_exactly_where_they_stopped(tmp_path: Path, cut: float) -> None:
    bars = _one_minute_bars_frame()
    path = write_dbn(tmp_path / "b.dbn", bars, "ohlcv-1m", size_decimals=3)
    check_round_trip(lambda: DbnBarsSource(path=str(path), size_decimals=3, frame_rows=100), cut)


class _FrameSource(Source):
    def __init__(self, frame: pl.DataFrame, time: str = "ts_event") -> None:
        self.frame, self.time = frame, time

    async def run(self, ctx: Context) -> None:
        if self.time == "ts_event":
            await emit_with_watermarks(ctx, self.frame, WatermarkTracker(0))
        else:
            await ctx.emit(self.frame)


async def _through(source: Source, operator: Operator) -> pl.DataFrame:
    sink = ListSink()
    dag = Dag().add_node(Node("src", source)).add_node(Node("op", operator)).add_node(Node("sink", sink))
    await run_graph(dag.add_edge("src", "op").add_edge("op", "sink"))
    return sink.frame


def _one_minute_bars_frame() -> pl.DataFrame:
    trades = conform(synthetic_trades(20_000, symbols=3, span_ns=DAY // 8).with_row_index("seq"), "trade")
    bars = asyncio.run(_through(_FrameSource(trades), BarsOperator(timeframe="1m")))
    # a DBN volume is an integer of units: keep the bars' volumes on the 0.001 grid (numpy divides exactly)
    return bars.with_columns(pl.Series("volume", np.rint(bars.get_column("volume").to_numpy() * 1000) / 1000))


def test_ohlcv_bars_feed_bars_of_bars(tmp_path: Path) -> None:
    bars = _one_minute_bars_frame()
    path = write_dbn(tmp_path / "b.dbn.zst", bars, "ohlcv-1m", size_decimals=3)
    sink = ListSink()
    dag = Dag().add_node(Node("src", DbnBarsSource(path=str(path), size_decimals=3))).add_node(Node("sink", sink))
    asyncio.run(run_graph(dag.add_edge("src", "sink")))
    ohlcv = ["symbol", "timeframe", "start", "end", "open", "high", "low", "close", "volume"]
    keys = ["symbol", "start"]
    assert_frame_equal(sink.frame.select(ohlcv).sort(keys), bars.select(ohlcv).sort(keys), check_exact=True)
    assert sink.frame.get_column("notional").null_count() == bars.height

    got = asyncio.run(_through(DbnBarsSource(path=str(path), size_decimals=3), Rebar(timeframe="5m")))
    unknown = bars.with_columns(  # what DBN OHLCV bars do not carry
        pl.lit(None, pl.Float64).alias("notional"),
        pl.lit(None, pl.Int64).alias("trades"),
        pl.lit("complete").alias("quality"),
    )
    want = asyncio.run(_through(_StoredBars(unknown), Rebar(timeframe="5m")))
    assert got.height > 0
    assert got.get_column("notional").null_count() == got.height
    assert_frame_equal(got.sort(keys), want.sort(keys), check_exact=True)


class _StoredBars(Source):
    def __init__(self, bars: pl.DataFrame) -> None:
        self.bars = bars.sort("start")

    async def run(self, ctx: Context) -> None:
        tracker = WatermarkTracker(0)
        for piece in tracker.pieces(self.bars.get_column("start").to_numpy()):
            await ctx.emit(self.bars[piece.start : piece.stop])
        await ctx.emit_watermark(tracker.watermark)


@pytest.mark.parametrize("schema", ["mbp-1", "tbbo", "bbo-1s"])
def test_quote_schemas_give_level_zero_quotes(tmp_path: Path, schema: str) -> None:
    quotes = pl.DataFrame(
        {
            "symbol": ["A", "B", "A"],
            "ts_event": [1_723_161_600_000_000_000 + i for i in range(3)],
            "bid": [1.5, 2.25, 61837.63],
            "ask": [1.75, 2.5, 61837.64],
            "bid_size": [1.0, 2.0, 0.00123],
            "ask_size": [3.0, 4.0, 5.5],
            "ts_recv": [None, 1_723_161_600_000_000_009, 1_723_161_600_000_000_010],
        }
    )
    path = write_dbn(tmp_path / f"q.{schema}.dbn", quotes, schema, size_decimals=5)
    good, bad = _read(ReplaySource(path=path, kind="quote", size_decimals=5))
    assert bad.height == 0
    want = quotes.with_columns(pl.coalesce("ts_recv", "ts_event").alias("ts_recv"))  # the writer's stand-in
    cols = ["symbol", "ts_event", "bid", "ask", "bid_size", "ask_size", "ts_recv"]
    assert_frame_equal(good.select(cols), want.select(cols), check_exact=True)
