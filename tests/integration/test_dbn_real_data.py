"""Bars from DBN equal bars from CSV on the real Binance trades and top of book (issue 24, item 1).

The test writes DBN files itself with ``databento-dbn``'s encoder (:mod:`mdp.testing.dbn`) from the real
files in ../shared/data/real: trades as ``trades`` records, the book ticker as ``mbp-1`` records, each
venue:symbol an instrument id with its symbology mapping in the metadata, prices as fixed-point 1e-9,
sizes in units of 1e-5 (the finest step in the files). Then the same graph runs on the CSV file and on
the DBN file (plain and zstd, cut in different block sizes), and the 1-minute bars (trades) and quote bars
(quotes) must be equal, every row and every column.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.operators.bars import BarsOperator
from mdp.operators.bars.quotes import QuoteBars
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Operator, Source
from mdp.sources.dbn import DbnFile
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph
from mdp.testing.dbn import write_dbn

pytestmark = pytest.mark.services

SIZE_DECIMALS = 5
TRADE_COLUMNS = {
    "ts_event": "trade_ts_ms",
    "ts_recv": "recv_ts_ns",
    "symbol": "{venue}:{symbol}",
    "price": "price",
    "size": "qty",
}
QUOTE_COLUMNS = {
    "ts_event": "transact_ts_ms",
    "ts_recv": "recv_ts_ns",
    "symbol": "{venue}:{symbol}",
    "bid": "bid_price",
    "bid_size": "bid_qty",
    "ask": "ask_price",
    "ask_size": "ask_qty",
}


def _trades_frame(folder: Path) -> pl.DataFrame:
    raw = pl.read_csv(folder / "binance_hftbacktest_trades.csv.gz")
    return raw.select(
        (pl.col("venue") + ":" + pl.col("symbol")).alias("symbol"),
        (pl.col("trade_ts_ms") * 1_000_000).alias("ts_event"),
        pl.col("price").cast(pl.Float64),
        pl.col("qty").cast(pl.Float64).alias("size"),
        pl.col("recv_ts_ns").alias("ts_recv"),
    )


def _quotes_frame(folder: Path) -> pl.DataFrame:
    raw = pl.read_csv(folder / "binance_hftbacktest_bookticker.csv.gz", schema_overrides={"transact_ts_ms": pl.Int64})
    return raw.select(
        (pl.col("venue") + ":" + pl.col("symbol")).alias("symbol"),
        # spot rows carry no exchange time: the receive time stands in, as ts_fallback does on the CSV path
        pl.coalesce(pl.col("transact_ts_ms") * 1_000_000, pl.col("recv_ts_ns")).alias("ts_event"),
        pl.col("bid_price").cast(pl.Float64).alias("bid"),
        pl.col("bid_qty").cast(pl.Float64).alias("bid_size"),
        pl.col("ask_price").cast(pl.Float64).alias("ask"),
        pl.col("ask_qty").cast(pl.Float64).alias("ask_size"),
        pl.col("recv_ts_ns").alias("ts_recv"),
    )


async def _run(source: Source, operator: Operator) -> tuple[pl.DataFrame, pl.DataFrame]:
    sink, dead = ListSink(), ListSink()
    dag = Dag().add_node(Node("src", source)).add_node(Node("op", operator)).add_node(Node("sink", sink))
    dag.add_node(Node("dead", dead)).add_edge("src", "op").add_edge("op", "sink").add_edge(
        "src", "dead", port="deadletter"
    )
    await run_graph(dag)
    return sink.frame, dead.frame


@pytest.fixture(scope="module")
def trade_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dbn_trades")
    frame = _trades_frame(shared_data)
    return {
        name: write_dbn(folder / name, frame, "trades", size_decimals=SIZE_DECIMALS)
        for name in ("trades.dbn", "trades.dbn.zst")
    }


@pytest.fixture(scope="module")
def quote_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dbn_quotes")
    return write_dbn(folder / "quotes.dbn.zst", _quotes_frame(shared_data), "mbp-1", size_decimals=SIZE_DECIMALS)


def test_the_written_file_holds_instrument_ids_and_their_symbology(trade_files: dict[str, Path]) -> None:
    dbn = DbnFile(trade_files["trades.dbn.zst"], size_decimals=SIZE_DECIMALS)
    assert dbn.kind == "trade"
    mappings = dbn.store.metadata.mappings
    assert sorted(mappings) == [
        "binance-coinm:BTCUSD_PERP",
        "binance-coinm:ETHUSD_PERP",
        "binance-spot:BTCUSDT",
        "binance-spot:ETHUSDT",
        "binance-usdm:BTCUSDT",
        "binance-usdm:ETHUSDT",
    ]
    first = next(dbn.frames(1_000))
    assert first.get_column("instrument_id").n_unique() > 1
    assert first.get_column("symbol").null_count() == 0


@pytest.mark.parametrize("name", ["trades.dbn", "trades.dbn.zst"])
@pytest.mark.parametrize("frame_rows", [997, 65_536])
async def test_bars_from_dbn_trades_equal_bars_from_the_csv(
    shared_data: Path, trade_files: dict[str, Path], name: str, frame_rows: int
) -> None:
    csv = ReplaySource(
        path=shared_data / "binance_hftbacktest_trades.csv.gz",
        columns=TRADE_COLUMNS,
        ts_unit="ms",
        ts_recv_unit="ns",
        max_out_of_orderness="5s",
        frame_rows=frame_rows,
    )
    dbn = ReplaySource(
        path=trade_files[name], size_decimals=SIZE_DECIMALS, max_out_of_orderness="5s", frame_rows=frame_rows
    )
    want, want_dead = await _run(csv, BarsOperator(timeframe="1m"))
    got, got_dead = await _run(dbn, BarsOperator(timeframe="1m"))
    assert want.height == 61
    assert want_dead.height == 0
    assert got_dead.height == 0
    assert_frame_equal(got, want, check_exact=True)


async def test_quote_bars_from_dbn_mbp1_equal_quote_bars_from_the_csv(shared_data: Path, quote_file: Path) -> None:
    csv = ReplaySource(
        path=shared_data / "binance_hftbacktest_bookticker.csv.gz",
        kind="quote",
        columns=QUOTE_COLUMNS,
        ts_unit="ms",
        ts_recv_unit="ns",
        ts_fallback="recv_ts_ns",
        ts_fallback_unit="ns",
        max_out_of_orderness="2s",
    )
    dbn = ReplaySource(path=quote_file, kind="quote", size_decimals=SIZE_DECIMALS, max_out_of_orderness="2s")
    want, want_dead = await _run(csv, QuoteBars(timeframe="1m"))
    got, got_dead = await _run(dbn, QuoteBars(timeframe="1m"))
    assert want.height > 60
    assert got_dead.height == want_dead.height == 0
    assert_frame_equal(got, want, check_exact=True)
