"""``StoreSink``: batching by rows, by age at a watermark, and at close; stats; config params."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from mdp.clock import ManualClock
from mdp.errors import MdpError, NodeError, PermanentStoreError
from mdp.records import END_OF_TIME, Bar, Watermark, from_frame
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.runtime.runtime import RunConfig
from mdp.stores import ParquetSink, SqliteSink, SqliteStore, StoreSink
from mdp.stores.samples import sample_bars, sample_trades
from mdp.testing import ListSource, run_graph


class CountingStore(SqliteStore):
    """A SQLite store that remembers the size of every write it was asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, tables={"bar": "bars"})
        self.writes: list[int] = []

    def write(self, kind: str, frame: pl.DataFrame) -> int:
        self.writes.append(frame.height)
        return super().write(kind, frame)


def _context(clock: ManualClock) -> Context:
    return Context("sink", {}, clock)


async def test_frames_are_held_until_batch_rows_are_reached(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "b.sqlite")
    sink = StoreSink(store, batch_rows=10, max_delay="1h")
    ctx = _context(ManualClock())
    await sink.open(ctx)
    for i in range(4):
        await sink.on_frame(sample_bars(4, origin=i * 10**12), ctx)
    await sink.drain()
    assert store.writes == [12]  # 3 frames of 4 rows reach 10; the 4th waits
    assert sink.stats()["rows_held"] == 4
    await sink.on_close(ctx)
    assert store.writes == [12, 4]
    with SqliteStore(tmp_path / "b.sqlite", tables={"bar": "bars"}) as check:
        assert check.read("bar").height == 16


async def test_a_watermark_writes_what_is_held_once_it_is_older_than_max_delay(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "w.sqlite")
    clock = ManualClock()
    sink = StoreSink(store, batch_rows=1_000, max_delay="1s")
    ctx = _context(clock)
    await sink.open(ctx)
    await sink.on_frame(sample_bars(3), ctx)
    await sink.on_watermark(100, ctx)
    assert store.writes == []  # held for 0s: keep gathering
    clock.set_ns(999_999_999)
    await sink.on_watermark(200, ctx)
    assert store.writes == []
    clock.set_ns(1_000_000_000)
    await sink.on_watermark(300, ctx)
    await sink.drain()
    assert store.writes == [3]
    await sink.on_watermark(400, ctx)  # nothing held: no empty write
    await sink.on_close(ctx)
    assert store.writes == [3]


async def test_stats_count_rows_batches_latency_and_say_where_the_bars_are(tmp_path: Path) -> None:
    sink = SqliteSink(path=str(tmp_path / "s.sqlite"), batch_rows=4)
    ctx = Context("sink", {})  # latency is measured on the runtime's clock: the real one here
    await sink.open(ctx)
    await sink.on_frame(pl.concat([sample_bars(4), sample_bars(4)]), ctx)  # 8 rows, 4 distinct keys
    await sink.on_close(ctx)
    stats = sink.stats()
    assert stats["location"] == f"sqlite:{tmp_path / 's.sqlite'} table bars"
    assert (stats["rows_received"], stats["rows_written"], stats["batches"]) == (8, 4, 1)
    assert stats["write_latency_max"] >= stats["write_latency_mean"] > 0
    assert ctx.counters == {"rows_written": 4, "batches_written": 1}


async def test_a_graph_writes_frames_and_bar_records_to_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "job.sqlite"
    bars = sample_bars(6)
    records: list[Bar] = from_frame(sample_bars(6, origin=10**12), "bar")
    dag = Dag()
    dag.add_node(Node("src", ListSource([bars[:3], Watermark(5), bars[3:], records[0], records[1:]], kind="bar")))
    dag.add_node(Node("sink", SqliteSink(path=str(path), batch_rows=100)))
    dag.add_edge("src", "sink")
    stats = await run_graph(dag, RunConfig(clock=ManualClock()))
    assert stats.nodes["sink"].extra["rows_written"] == 12
    with SqliteStore(path, tables={"bar": "bars"}, read_only=True) as store:
        assert store.read("bar").height == 12


async def test_a_graph_fails_naming_the_sink_when_the_store_refuses_the_data(tmp_path: Path) -> None:
    dag = Dag()
    dag.add_node(Node("src", ListSource([sample_bars(2).drop("close")])))
    dag.add_node(Node("bars_out", SqliteSink(path=str(tmp_path / "e.sqlite"))))
    dag.add_edge("src", "bars_out")
    with pytest.raises(NodeError, match="bars_out") as info:
        await run_graph(dag)
    assert isinstance(info.value.cause, PermanentStoreError)


async def test_the_sink_refuses_messages_that_are_not_records(tmp_path: Path) -> None:
    sink = SqliteSink(path=str(tmp_path / "x.sqlite"))
    with pytest.raises(MdpError, match="expects frames or bar records, got dict"):
        await sink.on_item({"close": 1.0}, _context(ManualClock()))


def test_sink_params_reject_unknown_keys_and_parse_durations(tmp_path: Path) -> None:
    params = SqliteSink.Params.model_validate(
        {"path": str(tmp_path / "p.sqlite"), "kind": "trade", "max_delay": "250ms"}
    )
    sink = SqliteSink.from_params(params)
    assert (sink.kind, sink.max_delay_ns, sink.store.tables) == ("trade", 250_000_000, {"trade": "trades"})
    assert sink.input_kind == "trade"
    with pytest.raises(ValidationError, match="extra"):
        SqliteSink.Params(path="x", batchrows=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SqliteSink.Params(batch_rows=0)


async def test_the_parquet_sink_captures_trades_by_default(tmp_path: Path) -> None:
    sink = ParquetSink(root=str(tmp_path / "cap"))
    ctx = _context(ManualClock())
    await sink.open(ctx)
    await sink.on_frame(sample_trades(8), ctx)
    await sink.on_watermark(END_OF_TIME, ctx)
    await sink.on_close(ctx)
    assert sink.stats()["location"] == f"parquet:{tmp_path / 'cap' / 'kind=trade'}"
    assert sorted(p.parent.name for p in (tmp_path / "cap").rglob("part-*.parquet")) == ["symbol=AAA", "symbol=BBB"]
