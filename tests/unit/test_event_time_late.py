"""Late data per operator: ``drop`` counts, ``side_output`` sends on port ``late``, ``revise`` re-emits
bars with ``revision + 1`` within ``allowed_lateness`` and stores keep the newest revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mdp.errors import ConfigError
from mdp.operators.bars import BarsOperator
from mdp.records import END_OF_TIME, Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.stores.sink import SqliteSink
from mdp.stores.sqlite import SqliteStore
from mdp.testing import ListSink, ListSource, run_graph

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_240 * S  # a minute boundary


def trades(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    """A canonical trade frame from (symbol, ts_event, price, size, seq) rows."""
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row")
    return conform(frame, "trade")


class Driver(Context):
    """Drive one operator by hand; ``ports`` are the output ports that have an edge."""

    __slots__ = ("connected_ports", "op", "out")

    def __init__(self, op: BarsOperator, ports: tuple[str, ...] = ("out",)) -> None:
        super().__init__("bars")
        self.op = op
        self.connected_ports = set(ports)
        self.out: list[tuple[str, Any]] = []

    def connected(self, port: str = "out") -> bool:
        return port in self.connected_ports

    async def emit(self, item: Any, port: str = "out") -> None:
        if port in self.connected_ports:
            self.out.append((port, item))

    async def emit_watermark(self, ts: int) -> None:
        self.out.append(("wm", ts))

    async def feed(self, frame: pl.DataFrame) -> None:
        await self.op.on_frame(frame, self)

    async def advance(self, watermark: int) -> None:
        self.watermark = watermark
        await self.op.on_watermark(watermark, self)

    def bars(self) -> pl.DataFrame:
        frames = [x for port, x in self.out if port == "out"]
        return pl.concat(frames) if frames else pl.DataFrame()

    def late(self) -> pl.DataFrame:
        frames = [x for port, x in self.out if port == "late"]
        return pl.concat(frames) if frames else pl.DataFrame()


async def test_drop_counts_late_rows_per_symbol_and_emits_nothing_for_them() -> None:
    d = Driver(BarsOperator(late_policy="drop"), ports=("out", "late"))
    await d.feed(trades(("X", T0 + 10 * S, 1.0, 1.0, 1)))
    await d.advance(T0 + M + 5 * S)
    await d.feed(trades(("X", T0 + 20 * S, 9.0, 1.0, 2), ("Y", T0 + 30 * S, 9.0, 1.0, 3)))
    await d.advance(END_OF_TIME)
    assert d.late().height == 0, "drop never uses the late port"
    assert d.bars().select("symbol", "high", "revision").rows() == [("X", 1.0, 0)]
    stats = d.op.stats()
    assert (stats["late_rows"], stats["late_dropped"], stats["late_rows_by_symbol"]) == (2, 2, {"X": 1, "Y": 1})
    assert d.counters["late_dropped"] == 2


async def test_side_output_sends_late_rows_unchanged_on_the_late_port() -> None:
    d = Driver(BarsOperator(late_policy="side_output"), ports=("out", "late"))
    await d.feed(trades(("X", T0 + 50 * S, 5.0, 1.0, 1)))
    await d.advance(T0 + 40 * S)
    late = trades(("X", T0 + 10 * S, 1.0, 2.0, 2), ("X", T0 + 45 * S, 4.0, 1.0, 3))
    await d.feed(late)
    await d.advance(END_OF_TIME)
    assert d.late().equals(late.slice(0, 1)), "the late row leaves as it came, every column kept"
    assert d.bars().select("open", "high", "trades").row(0) == (4.0, 5.0, 2)
    assert d.op.stats()["late_side_output"] == 1


async def test_side_output_without_a_late_edge_counts_the_rows_as_dropped() -> None:
    d = Driver(BarsOperator(late_policy="side_output"), ports=("out",))
    await d.advance(T0 + M)
    await d.feed(trades(("X", T0 + S, 1.0, 1.0, 1)))
    assert (d.op.stats()["late_dropped"], d.op.stats()["late_side_output"]) == (1, 0)


async def test_revise_reemits_a_closed_bar_with_the_next_revision_at_the_next_watermark() -> None:
    d = Driver(BarsOperator(late_policy="revise", allowed_lateness="30s"), ports=("out", "late"))
    await d.feed(trades(("X", T0 + 10 * S, 10.0, 1.0, 1), ("X", T0 + 20 * S, 11.0, 1.0, 2)))
    await d.advance(T0 + M + 5 * S)
    first = d.bars()
    assert first.select("revision", "open", "close", "trades").rows() == [(0, 10.0, 11.0, 2)]
    await d.feed(trades(("X", T0 + 5 * S, 7.0, 2.0, 3)))  # late, window closed 5 s ago: revisable
    assert d.bars().height == 1, "a revision waits until the watermark that judged it moves on"
    await d.feed(trades(("X", T0 + 59 * S, 12.0, 1.0, 4)))  # same watermark: the same revision
    await d.advance(T0 + M + 6 * S)
    revised = d.bars().filter(pl.col("revision") == 1)
    assert revised.select("start", "open", "high", "low", "close", "volume", "trades").rows() == [
        (T0, 7.0, 12.0, 7.0, 12.0, 5.0, 4)
    ]
    assert d.op.stats()["revisions"] == 1
    assert d.op.stats()["late_revised"] == 2


async def test_each_watermark_step_makes_one_more_revision() -> None:
    d = Driver(BarsOperator(late_policy="revise", allowed_lateness="1m"), ports=("out",))
    await d.feed(trades(("X", T0 + 10 * S, 10.0, 1.0, 1)))
    await d.advance(T0 + M)
    for i in range(3):
        await d.feed(trades(("X", T0 + (20 + i) * S, 20.0 + i, 1.0, 2 + i)))
        await d.advance(T0 + M + (i + 1) * S)
    assert d.bars().select("revision", "trades", "close").rows() == [
        (0, 1, 10.0),
        (1, 2, 20.0),
        (2, 3, 21.0),
        (3, 4, 22.0),
    ]


async def test_revise_sends_rows_beyond_allowed_lateness_to_the_side_output() -> None:
    d = Driver(BarsOperator(late_policy="revise", allowed_lateness="30s"), ports=("out", "late"))
    await d.feed(trades(("X", T0 + 10 * S, 10.0, 1.0, 1)))
    await d.advance(T0 + M + 30 * S)  # end + allowed_lateness == watermark: too late from now on
    await d.feed(trades(("X", T0 + 15 * S, 1.0, 1.0, 2)))
    await d.advance(END_OF_TIME)
    assert d.late().get_column("seq").to_list() == [2]
    assert d.bars().get_column("revision").to_list() == [0]
    assert d.op.stats()["kept_windows"] == 0, "closed windows are forgotten after allowed_lateness"


async def test_revise_without_a_late_edge_counts_rows_beyond_allowed_lateness_as_dropped() -> None:
    d = Driver(BarsOperator(late_policy="revise"), ports=("out",))
    await d.feed(trades(("X", T0 + 10 * S, 10.0, 1.0, 1)))
    await d.advance(T0 + M)
    await d.feed(trades(("X", T0 + 15 * S, 1.0, 1.0, 2)))
    assert d.op.stats()["late_dropped"] == 1


async def test_revise_lets_a_late_row_into_a_window_that_is_still_open() -> None:
    d = Driver(BarsOperator(late_policy="revise"), ports=("out", "late"))
    await d.feed(trades(("X", T0 + 50 * S, 5.0, 1.0, 1)))
    await d.advance(T0 + 40 * S)
    await d.feed(trades(("X", T0 + 10 * S, 1.0, 1.0, 2)))  # late by the rule, but its window is open
    await d.advance(END_OF_TIME)
    assert d.bars().select("open", "low", "trades", "revision").rows() == [(1.0, 1.0, 2, 0)]
    assert d.op.stats()["late_rows"] == 1
    assert d.late().height == 0


async def test_a_late_row_in_a_window_that_never_had_a_bar_makes_revision_zero() -> None:
    d = Driver(BarsOperator(late_policy="revise", allowed_lateness="2m"), ports=("out",))
    await d.feed(trades(("X", T0 + M + S, 5.0, 1.0, 1)))
    await d.advance(T0 + 2 * M)
    await d.feed(trades(("X", T0 + S, 1.0, 1.0, 2)))
    await d.advance(T0 + 2 * M + S)
    assert d.bars().select("start", "revision").rows() == [(T0 + M, 0), (T0, 0)]


async def test_revise_holds_the_forwarded_watermark_back_by_allowed_lateness() -> None:
    d = Driver(BarsOperator(late_policy="revise", allowed_lateness="30s"), ports=("out",))
    await d.advance(T0 + M)
    await d.advance(END_OF_TIME)
    assert [x for port, x in d.out if port == "wm"] == [T0 + 30 * S, END_OF_TIME]


def test_allowed_lateness_needs_the_revise_policy() -> None:
    with pytest.raises(ConfigError, match="allowed_lateness applies to late_policy 'revise' only"):
        BarsOperator(late_policy="drop", allowed_lateness="10s")
    assert BarsOperator(late_policy="revise", allowed_lateness="10s").late.allowed_lateness == 10 * S


async def test_the_late_port_feeds_any_trade_sink_in_a_graph() -> None:
    bars, late = ListSink(kind="bar"), ListSink(kind="trade")
    feed = [trades(("X", T0 + 50 * S, 5.0, 1.0, 1)), Watermark(T0 + M), trades(("X", T0 + S, 1.0, 1.0, 2))]
    dag = Dag()
    dag.add_node(Node("source", ListSource(feed, kind="trade")))
    dag.add_node(Node("bars", BarsOperator(late_policy="side_output")))
    dag.add_node(Node("store", bars)).add_node(Node("late", late))
    dag.add_edge("source", "bars").add_edge("bars", "store").add_edge("bars", "late", port="late")
    stats = await run_graph(dag)
    assert late.frame.get_column("seq").to_list() == [2]
    assert stats.nodes["bars"].counters["late_side_output"] == 1
    assert BarsOperator().port_kind("late") == "trade"


async def test_revisions_in_a_sqlite_store_end_at_the_highest_revision(tmp_path: Path) -> None:
    db = tmp_path / "bars.sqlite"
    feed: list[Any] = [trades(("X", T0 + 10 * S, 10.0, 1.0, 1), ("Y", T0 + 10 * S, 50.0, 1.0, 2)), Watermark(T0 + M)]
    for i in range(3):  # three late trades for X, each under a newer watermark: revisions 1, 2, 3
        feed += [trades(("X", T0 + (20 + i) * S, 11.0 + i, 1.0, 3 + i)), Watermark(T0 + M + (i + 1) * S)]
    dag = Dag()
    dag.add_node(Node("source", ListSource(feed, kind="trade")))
    dag.add_node(Node("bars", BarsOperator(late_policy="revise", allowed_lateness="1m")))
    dag.add_node(Node("store", SqliteSink(path=str(db))))
    dag.add_edge("source", "bars").add_edge("bars", "store")
    await run_graph(dag)
    with SqliteStore(str(db)) as store:
        stored = store.read("bar").sort("symbol")
    assert stored.select("symbol", "revision", "trades", "close", "volume").rows() == [
        ("X", 3, 4, 13.0, 4.0),
        ("Y", 0, 1, 50.0, 1.0),
    ]
