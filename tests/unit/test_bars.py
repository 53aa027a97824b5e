"""``operator.bars`` on hand-made trades: OHLCV values, ordering, lateness, emission and flushing."""

from __future__ import annotations

import math
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError

from mdp.errors import ConfigError, MdpError
from mdp.operators.bars import BEHIND_ROWS, BarsOperator, BarsParams
from mdp.operators.bars import operator as bars_module
from mdp.records import BAR_SCHEMA, END_OF_TIME, Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.runtime.runtime import RunConfig
from mdp.testing import ListSink, ListSource, run_graph, run_operator

S = 1_000_000_000
M = 60 * S
T0 = 1_723_161_240 * S  # 2024-08-08T23:54:00Z, a minute boundary


def trades(*rows: tuple[str, int, float, float, int]) -> pl.DataFrame:
    """A canonical trade frame from (symbol, ts_event, price, size, seq) rows."""
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row")
    return conform(frame, "trade")


class Driver(Context):
    """Drive one operator by hand: ``feed`` frames, ``advance`` the watermark, read what came out."""

    __slots__ = ("op", "out")

    def __init__(self, op: BarsOperator) -> None:
        super().__init__("bars")
        self.op = op
        self.out: list[Any] = []

    async def emit(self, item: Any, port: str = "out") -> None:
        self.out.append(item)

    async def emit_watermark(self, ts: int) -> None:
        self.out.append(Watermark(ts))

    async def feed(self, frame: pl.DataFrame) -> None:
        await self.op.on_frame(frame, self)

    async def advance(self, watermark: int) -> pl.DataFrame | None:
        """Move the watermark; return the bar frame it released (None if none), checking it came first."""
        self.out.clear()
        self.watermark = watermark
        await self.op.on_watermark(watermark, self)
        assert self.out[-1] == Watermark(watermark), "the watermark is forwarded after the bars"
        bars = [x for x in self.out if isinstance(x, pl.DataFrame)]
        assert len(bars) <= 1, "one watermark releases at most one bar frame"
        return bars[0] if bars else None


async def test_a_minute_of_trades_gives_one_bar_with_exact_ohlcv() -> None:
    d = Driver(BarsOperator(timeframe="1m"))
    await d.feed(
        trades(
            ("X", T0 + 1 * S, 10.0, 2.0, 1),
            ("X", T0 + 2 * S, 13.0, 1.0, 2),
            ("X", T0 + 3 * S, 9.0, 3.0, 3),
            ("X", T0 + 59 * S, 11.0, 4.0, 4),
        )
    )
    bars = await d.advance(T0 + M)
    assert bars is not None
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars.to_dicts() == [
        {
            "symbol": "X",
            "timeframe": "1m",
            "start": T0,
            "end": T0 + M,
            "open": 10.0,
            "high": 13.0,
            "low": 9.0,
            "close": 11.0,
            "volume": 10.0,
            "notional": 20.0 + 13.0 + 27.0 + 44.0,
            "vwap": 104.0 / 10.0,
            "trades": 4,
            "revision": 0,
            "quality": "partial",  # the first bar of a key since the operator started
        }
    ]


async def test_ties_on_ts_event_are_broken_by_seq_not_by_arrival() -> None:
    d = Driver(BarsOperator())
    await d.feed(
        trades(
            ("X", T0 + S, 2.0, 1.0, 8),
            ("X", T0 + S, 1.0, 1.0, 7),
            ("X", T0 + S, 5.0, 1.0, 10),
            ("X", T0 + S, 3.0, 1.0, 9),
        )
    )
    bars = await d.advance(T0 + M)
    assert bars is not None
    assert bars.select("open", "close").row(0) == (1.0, 5.0)


async def test_ties_across_frames_are_broken_by_seq_too() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + S, 2.0, 1.0, 8), ("X", T0 + S, 3.0, 1.0, 9)))
    await d.feed(trades(("X", T0 + S, 4.0, 1.0, 6), ("X", T0 + S, 5.0, 1.0, 10), ("X", T0 + S, 1.0, 1.0, 7)))
    bars = await d.advance(END_OF_TIME)
    assert bars is not None
    assert bars.select("open", "close").row(0) == (4.0, 5.0)


async def test_rows_out_of_order_within_a_frame_are_ordered_by_event_time() -> None:
    d = Driver(BarsOperator())
    await d.feed(
        trades(("X", T0 + 30 * S, 5.0, 1.0, 3), ("X", T0 + 10 * S, 4.0, 1.0, 1), ("X", T0 + 20 * S, 6.0, 1.0, 2))
    )
    bars = await d.advance(T0 + M)
    assert bars is not None
    assert bars.select("open", "high", "low", "close").row(0) == (4.0, 6.0, 4.0, 5.0)


async def test_a_later_frame_can_hold_the_open_and_an_earlier_one_the_close() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + 20 * S, 5.0, 1.0, 2), ("X", T0 + 50 * S, 7.0, 1.0, 5)))
    await d.feed(trades(("X", T0 + 10 * S, 4.0, 1.0, 1), ("X", T0 + 40 * S, 6.0, 1.0, 4)))
    bars = await d.advance(T0 + M)
    assert bars is not None
    assert bars.select("open", "close", "trades", "volume").row(0) == (4.0, 7.0, 4, 4.0)


async def test_late_rows_are_dropped_and_counted_per_symbol() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + 50 * S, 5.0, 1.0, 1), ("Y", T0 + 50 * S, 50.0, 1.0, 2)))
    assert await d.advance(T0 + 30 * S) is None
    await d.feed(
        trades(
            ("X", T0 + 10 * S, 1.0, 1.0, 3),  # late: older than the watermark in force
            ("X", T0 + 29 * S, 1.0, 1.0, 4),  # late
            ("Y", T0 + 20 * S, 1.0, 1.0, 5),  # late
            ("Y", T0 + 30 * S, 60.0, 1.0, 6),  # on time: exactly at the watermark
        )
    )
    bars = await d.advance(T0 + M)
    assert bars is not None
    assert bars.select("symbol", "open", "high", "low", "trades").rows() == [
        ("X", 5.0, 5.0, 5.0, 1),
        ("Y", 60.0, 60.0, 50.0, 2),
    ]
    assert d.counters["late_rows"] == 3
    stats = d.op.stats()
    assert stats["late_rows"] == 3
    assert stats["late_rows_by_symbol"] == {"X": 2, "Y": 1}


async def test_a_frame_of_only_late_rows_changes_nothing_but_the_counts() -> None:
    d = Driver(BarsOperator())
    await d.advance(T0 + M)
    await d.feed(trades(("X", T0 + S, 1.0, 1.0, 1)))
    assert await d.advance(END_OF_TIME) is None
    assert d.op.stats()["late_rows_by_symbol"] == {"X": 1}


async def test_bars_are_emitted_only_once_the_watermark_reaches_their_end() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + M + S, 2.0, 1.0, 2)))
    assert await d.advance(T0 + M - 1) is None
    first = await d.advance(T0 + M)
    assert first is not None
    assert first.select("start", "open").rows() == [(T0, 1.0)]
    assert await d.advance(T0 + 2 * M - 1) is None
    second = await d.advance(T0 + 2 * M)
    assert second is not None
    assert second.select("start", "open").rows() == [(T0 + M, 2.0)]
    assert d.op.stats()["bars_emitted"] == 2


async def test_intervals_without_trades_give_no_bar() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + 3 * M + S, 2.0, 1.0, 2)))
    bars = await d.advance(T0 + 10 * M)
    assert bars is not None
    assert bars.get_column("start").to_list() == [T0, T0 + 3 * M]


async def test_one_watermark_releases_one_frame_sorted_by_start_then_symbol() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("B", T0 + M + S, 1.0, 1.0, 1), ("A", T0 + M + 2 * S, 1.0, 1.0, 2), ("C", T0 + S, 1.0, 1.0, 3)))
    await d.feed(trades(("A", T0 + 2 * S, 1.0, 1.0, 4)))
    bars = await d.advance(T0 + 2 * M)
    assert bars is not None
    assert bars.select("start", "symbol").rows() == [(T0, "A"), (T0, "C"), (T0 + M, "A"), (T0 + M, "B")]


def test_end_of_input_flushes_every_open_window() -> None:
    frame = trades(("X", T0 + S, 1.0, 1.0, 1), ("Y", T0 + 5 * M, 2.0, 1.0, 2))
    out = run_operator(BarsOperator(), [frame])  # the runtime ends the stream with Watermark(END_OF_TIME)
    bars = pl.concat([x for x in out if isinstance(x, pl.DataFrame)])
    assert bars.select("symbol", "start").rows() == [("X", T0), ("Y", T0 + 5 * M)]


async def test_stats_count_open_windows_until_they_close() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + S, 1.0, 1.0, 1), ("Y", T0 + S, 1.0, 1.0, 2), ("X", T0 + M, 1.0, 1.0, 3)))
    await d.feed(trades(("X", T0 + 2 * S, 1.0, 1.0, 4)))
    assert d.op.stats()["open_windows"] == 3
    await d.advance(T0 + M)
    assert d.op.stats()["open_windows"] == 1


async def test_volume_and_notional_are_the_correctly_rounded_sums() -> None:
    d = Driver(BarsOperator())
    sizes = [0.1] * 10
    await d.feed(trades(*[("X", T0 + i, 0.3, s, i) for i, s in enumerate(sizes[:3])]))
    await d.feed(trades(*[("X", T0 + i, 0.3, s, i) for i, s in enumerate(sizes[3:], start=3)]))
    bars = await d.advance(END_OF_TIME)
    assert bars is not None
    assert sum(sizes) != 1.0  # a plain float sum drifts
    assert bars.get_column("volume").item() == math.fsum(sizes) == 1.0
    assert bars.get_column("notional").item() == math.fsum([0.3 * s for s in sizes])


async def test_a_window_of_zero_volume_has_no_vwap() -> None:
    d = Driver(BarsOperator())
    await d.feed(trades(("X", T0 + S, 1.0, 0.0, 1)))
    bars = await d.advance(END_OF_TIME)
    assert bars is not None
    assert bars.select("volume", "vwap", "trades").row(0) == (0.0, None, 1)


async def test_without_seq_arrival_order_breaks_ties() -> None:
    d = Driver(BarsOperator())
    await d.feed(pl.DataFrame({"symbol": ["X", "X"], "ts_event": [T0, T0], "price": [1.0, 2.0], "size": [1.0, 1.0]}))
    await d.feed(trades(("X", T0, 3.0, 1.0, 0)).with_columns(pl.lit(None, dtype=pl.Int64).alias("seq")))
    bars = await d.advance(END_OF_TIME)
    assert bars is not None
    assert bars.select("open", "close").row(0) == (1.0, 3.0)


async def test_an_origin_shifts_the_bar_grid() -> None:
    d = Driver(BarsOperator(timeframe="1m", origin="30s"))
    await d.feed(trades(("X", T0 + 29 * S, 1.0, 1.0, 1), ("X", T0 + 30 * S, 2.0, 1.0, 2)))
    bars = await d.advance(END_OF_TIME)
    assert bars is not None
    assert bars.select("start", "end").rows() == [(T0 - 30 * S, T0 + 30 * S), (T0 + 30 * S, T0 + 90 * S)]


async def test_many_small_frames_into_one_long_window_are_compacted() -> None:
    d = Driver(BarsOperator(timeframe="1h"))
    for i in range(100):
        await d.feed(trades(("X", T0 + i * S, float(100 - i), 1.0, i), ("Y", T0 + i * S, 1.0, 2.0, i)))
    assert d.op.open_windows == 2
    bars = await d.advance(END_OF_TIME)
    assert bars is not None
    assert bars.select("symbol", "open", "low", "close", "volume", "trades").rows() == [
        ("X", 100.0, 1.0, 1.0, 100.0, 100),
        ("Y", 1.0, 1.0, 1.0, 200.0, 100),
    ]


async def test_a_frame_without_a_needed_column_is_rejected_naming_it() -> None:
    d = Driver(BarsOperator())
    with pytest.raises(MdpError, match=r"\['price'\] missing"):
        await d.feed(pl.DataFrame({"symbol": ["X"], "ts_event": [T0], "size": [1.0]}))


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("price", float("nan"), "1 non-finite price"),
        ("size", float("inf"), "1 non-finite size"),
        ("ts_event", None, "1 ts_event"),
    ],
)
async def test_trades_with_missing_or_non_finite_values_are_rejected_naming_them(
    column: str, value: float | None, problem: str
) -> None:
    d = Driver(BarsOperator())
    frame = trades(("X", T0, 1.0, 1.0, 1), ("X", T0 + S, 2.0, 1.0, 2))
    frame = frame.with_columns(pl.when(pl.col("seq") == 2).then(value).otherwise(pl.col(column)).alias(column))
    with pytest.raises(MdpError, match=problem):
        await d.feed(frame)


def test_params_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        BarsParams.model_validate({"timeframe": "1m", "window": "1m"})
    with pytest.raises(ValidationError, match="timeframe '2d' is out of range"):
        BarsParams(timeframe="2d")
    with pytest.raises(ConfigError, match=r"timeframe .1\.5m. is not valid"):
        BarsOperator(timeframe="1.5m")
    with pytest.raises(ConfigError, match="late_policy"):
        BarsOperator(late_policy="later")


def test_params_build_the_operator() -> None:
    params = BarsParams.model_validate({"timeframe": "5m", "origin": "1m"})
    op = BarsOperator.from_params(params)
    assert (op.timeframe, op.windows.size, op.windows.origin) == ("5m", 5 * M, M)
    assert BarsOperator(timeframe="60s").timeframe == "1m"


async def test_bars_run_in_a_graph_between_trade_and_bar_nodes() -> None:
    frame = trades(("X", T0 + S, 1.0, 1.0, 1), ("X", T0 + M + S, 2.0, 1.0, 2))
    sink = ListSink(kind="bar")
    dag = Dag()
    dag.add_node(Node("source", ListSource([frame, Watermark(T0 + M)], kind="trade")))
    dag.add_node(Node("bars", BarsOperator()))
    dag.add_node(Node("sink", sink))
    dag.add_edge("source", "bars").add_edge("bars", "sink")
    stats = await run_graph(dag)
    assert sink.frame.get_column("start").to_list() == [T0, T0 + M]
    assert sink.watermarks == [T0 + M, END_OF_TIME]
    assert stats.nodes["bars"].extra["bars_emitted"] == 2
    assert stats.counter("bars_emitted") == 2


def _minutes_of_trades(minutes: int, per_minute: int) -> list[pl.DataFrame]:
    """One frame per minute of trades in three symbols, in event order."""
    frames = []
    for m in range(minutes):
        step = M // per_minute
        rows = [("ABC"[i % 3], T0 + m * M + i * step, 100.0 + i % 7, 1.0 + i % 5, 0) for i in range(per_minute)]
        frames.append(trades(*rows).drop("seq"))
    return frames


async def _bars_through_a_graph(messages: list[Any], capacity_rows: int | None) -> tuple[ListSink, BarsOperator]:
    sink, op = ListSink(kind="bar"), BarsOperator()
    dag = Dag().add_node(Node("source", ListSource(messages, kind="trade"))).add_node(Node("bars", op))
    dag.add_node(Node("sink", sink)).add_edge("source", "bars").add_edge("bars", "sink")
    await run_graph(dag, RunConfig(channel_capacity=4096, channel_capacity_rows=capacity_rows))
    return sink, op


async def test_an_operator_behind_its_input_batches_its_closes_and_gives_the_same_bars() -> None:
    frames = _minutes_of_trades(6, BEHIND_ROWS)
    messages: list[Any] = []
    for m, frame in enumerate(frames):
        messages += [frame, Watermark(T0 + (m + 1) * M)]
    # the whole input queued at once: the operator is behind from the start
    batched, _ = await _bars_through_a_graph(messages, capacity_rows=None)
    # one frame of room: nothing ever waits, every watermark closes its minute as it comes
    stepwise, _ = await _bars_through_a_graph(messages, capacity_rows=1)
    assert batched.frame.rows() == stepwise.frame.rows()
    assert batched.frame.height == 6 * 3
    bar_frames = [x for x in batched.items if isinstance(x, pl.DataFrame)]
    assert len(bar_frames) < len([x for x in stepwise.items if isinstance(x, pl.DataFrame)]) == 6
    # the held-back watermarks come after their bars, never before
    assert batched.watermarks[-1] == END_OF_TIME
    assert len(batched.watermarks) < len(stepwise.watermarks)


async def test_a_feed_the_operator_keeps_up_with_closes_at_every_watermark() -> None:
    frames = _minutes_of_trades(4, 50)  # a trickle: far fewer than BEHIND_ROWS rows ever wait
    messages: list[Any] = []
    for m, frame in enumerate(frames):
        messages += [frame, Watermark(T0 + (m + 1) * M)]
    sink, _ = await _bars_through_a_graph(messages, capacity_rows=None)
    assert sink.watermarks == [T0 + (m + 1) * M for m in range(4)] + [END_OF_TIME]
    assert len([x for x in sink.items if isinstance(x, pl.DataFrame)]) == 4


async def test_a_batched_close_is_bounded_by_close_batch_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bars_module, "CLOSE_BATCH_ROWS", 2 * BEHIND_ROWS)
    frames = _minutes_of_trades(6, BEHIND_ROWS)
    messages: list[Any] = []
    for m, frame in enumerate(frames):
        messages += [frame, Watermark(T0 + (m + 1) * M)]
    sink, _ = await _bars_through_a_graph(messages, capacity_rows=None)
    sizes = [x.height for x in sink.items if isinstance(x, pl.DataFrame)]
    assert sum(sizes) == 18
    assert max(sizes) <= 2 * 3  # at most two minutes of bars per close
