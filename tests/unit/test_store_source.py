"""``StoreSource``: a stored range re-read as frames in event-time order, behind watermarks."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from mdp.errors import ConfigError
from mdp.records import END_OF_TIME
from mdp.runtime.graph import Dag, Node
from mdp.stores import ParquetStore, SqliteStore, StoreSource
from mdp.stores.samples import sample_bars, sample_trades
from mdp.testing import ListSink, run_graph

MINUTE = 60_000_000_000


async def _run(source: StoreSource) -> ListSink:
    sink = ListSink(kind=source.kind)
    dag = Dag()
    dag.add_node(Node("src", source))
    dag.add_node(Node("out", sink))
    dag.add_edge("src", "out")
    await run_graph(dag)
    return sink


async def test_bars_come_back_in_start_order_in_frames_of_batch_rows(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(12))
    sink = await _run(StoreSource(store="sqlite", path=str(path), kind="bar", batch_rows=5))
    frames = [x for x in sink.items if isinstance(x, pl.DataFrame)]
    assert [f.height for f in frames] == [5, 5, 2]
    assert sink.frame.get_column("start").is_sorted()
    assert sink.frame.sort("symbol", "timeframe", "start").equals(sample_bars(12).sort("symbol", "timeframe", "start"))
    assert sink.watermarks == [MINUTE, 2 * MINUTE, END_OF_TIME]  # the newest start after each frame


async def test_filters_select_a_symbol_and_an_iso_time_range(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(12, origin=1_723_161_600_000_000_000))  # 2024-08-09T00:00Z
    source = StoreSource(
        store="sqlite",
        path=str(path),
        symbol="AAA",
        timeframe="1m",
        start="2024-08-09T00:01:00Z",
        end="2024-08-09T00:03:00Z",
    )
    frame = (await _run(source)).frame
    assert frame.select("symbol", "timeframe").unique().rows() == [("AAA", "1m")]
    assert frame.get_column("start").to_list() == [1_723_161_600_000_000_000 + m * MINUTE for m in (1, 2)]
    assert source.stats()["rows_emitted"] == 2


async def test_trades_are_replayed_from_parquet_with_ts_event_watermarks(tmp_path: Path) -> None:
    with ParquetStore(tmp_path) as store:
        store.write("trade", sample_trades(8))
        store.write("trade", sample_trades(8))  # a replayed capture: read back once
    source = StoreSource.from_params(StoreSource.Params(store="parquet", root=str(tmp_path), kind="trade"))
    sink = await _run(source)
    assert sink.frame.height == 8
    assert sink.frame.get_column("ts_event").is_sorted()
    assert sink.watermarks == [3_000, END_OF_TIME]


async def test_an_empty_range_emits_only_the_final_watermark(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}):
        pass
    sink = await _run(StoreSource(store="sqlite", path=str(path), symbol="nobody"))
    assert sink.items == []
    assert sink.watermarks == [END_OF_TIME]


async def test_a_store_object_can_be_given_directly(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite", tables={"trade": "trades"})
    with store:
        store.write("trade", sample_trades(4))
    sink = await _run(StoreSource(store=store, kind="trade", max_out_of_orderness="1us"))
    assert sink.frame.height == 4
    assert sink.watermarks == [1_000 - 1_000, END_OF_TIME]  # newest ts_event minus the 1us bound


def test_a_missing_connection_parameter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs path"):
        StoreSource(store="sqlite")
    with pytest.raises(ConfigError, match="needs root"):
        StoreSource(store="parquet", kind="trade")


def test_the_output_kind_is_the_kind_read() -> None:
    source = StoreSource(store="sqlite", path="x.sqlite", kind="quote")
    assert source.port_kind("out") == "quote"
    assert source.store.read_only
    assert source.store.tables == {"quote": "quotes"}
