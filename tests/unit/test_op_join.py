"""AsofJoin (trade to prevailing quote) and WindowJoin, both driven by the watermark of two inputs."""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError, MdpError
from mdp.operators.market.join import AsofJoin, AsofJoinParams, WindowJoin, WindowJoinParams
from mdp.records import END_OF_TIME, Watermark, conform
from mdp.runtime.channel import Channel
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.runtime.runtime import RunStats
from mdp.testing import ListSink, ListSource, run_graph

QUOTE_COLS = ["quote_ts_event", "bid", "bid_size", "ask", "ask_size"]


def trades(symbols: list[str], ts: list[int], first_seq: int = 0) -> pl.DataFrame:
    seq = list(range(first_seq, first_seq + len(ts)))
    frame = pl.DataFrame({"symbol": symbols, "ts_event": ts, "seq": seq, "price": [float(s) for s in seq]})
    return conform(frame.with_columns(size=pl.lit(1.0)), "trade")


def quotes(symbols: list[str], ts: list[int], first_seq: int = 0) -> pl.DataFrame:
    seq = list(range(first_seq, first_seq + len(ts)))
    frame = pl.DataFrame({"symbol": symbols, "ts_event": ts, "seq": seq, "bid": [float(s) for s in seq]})
    return conform(frame.with_columns(ask=pl.col("bid") + 1, bid_size=pl.lit(1.0), ask_size=pl.lit(2.0)), "quote")


async def join(
    op: Any, left: list[Any], right: list[Any], names: tuple[str, str] = ("trades", "quotes"), late: bool = False
) -> tuple[ListSink, RunStats, ListSink]:
    sink, late_sink = ListSink(), ListSink()
    dag = Dag().add_node(Node(names[0], ListSource(left))).add_node(Node(names[1], ListSource(right)))
    dag.add_node(Node("join", op)).add_node(Node("sink", sink))
    dag.add_edge(names[0], "join").add_edge(names[1], "join").add_edge("join", "sink")
    if late:
        dag.add_node(Node("late", late_sink)).add_edge("join", "late", port="late")
    return sink, await run_graph(dag), late_sink


def reference(left: pl.DataFrame, right: pl.DataFrame, **options: Any) -> pl.DataFrame:
    """One batch polars join_asof over the whole streams: the answer the streaming join must give."""
    right = right.sort(["ts_event", "seq"], maintain_order=True).select(
        "symbol", "ts_event", pl.col("ts_event").alias("quote_ts_event"), "bid", "bid_size", "ask", "ask_size"
    )
    return left.sort("ts_event", maintain_order=True).join_asof(
        right, on="ts_event", by="symbol", check_sortedness=False, **options
    )


async def test_each_trade_gets_the_prevailing_quote_of_its_symbol() -> None:
    t = trades(["X", "Y", "X", "X"], [5, 6, 10, 20])
    q = quotes(["X", "Y", "X", "X"], [1, 2, 10, 25])
    sink, stats, _ = await join(AsofJoin(), [t], [q])
    assert sink.frame.select("symbol", "ts_event", "quote_ts_event", "bid").rows() == [
        ("X", 5, 1, 0.0),
        ("Y", 6, 2, 1.0),
        ("X", 10, 10, 2.0),  # a quote at the trade's own time prevails
        ("X", 20, 10, 2.0),
    ]
    assert sink.frame.columns == [*t.columns, *QUOTE_COLS]
    assert stats.nodes["join"].counters["joined"] == 4


async def test_a_trade_waits_until_the_watermark_proves_its_quote_is_known() -> None:
    op, channel = AsofJoin(), Channel[Any](100)
    ctx = Context("join", {"out": [channel]})
    ctx.input = "trades"
    await op.on_frame(trades(["X"], [10]), ctx)
    ctx.input = "quotes"
    await op.on_frame(quotes(["X"], [4]), ctx)
    await op.on_watermark(10, ctx)  # a quote stamped 10 may still come
    assert [type(channel.get_nowait()).__name__ for _ in range(len(channel))] == ["Watermark"]
    await op.on_frame(quotes(["X"], [10], first_seq=1), ctx)
    await op.on_watermark(11, ctx)
    out = channel.get_nowait()
    assert out.select("ts_event", "quote_ts_event", "bid").rows() == [(10, 10, 1.0)]
    assert op.stats()["quotes_held"] == 1  # only the prevailing quote of X is kept


async def test_tolerance_leaves_stale_quotes_unmatched() -> None:
    t, q = trades(["X", "X"], [100, 300]), quotes(["X"], [50])
    sink, _, _ = await join(AsofJoin(tolerance="100ns"), [t], [q])
    assert sink.frame["bid"].to_list() == [0.0, None]
    assert sink.frame.equals(reference(t, q, tolerance=100))


async def feed(op: Any, steps: list[tuple[str, Any]], ports: tuple[str, ...] = ("out",)) -> dict[str, list[Any]]:
    """Drive ``op`` by hand: (input name, frame) or ("watermark", ts); the node watermark is what we say."""
    channels = {port: Channel[Any](1000) for port in ports}
    ctx = Context("join", {port: [ch] for port, ch in channels.items()})
    await op.open(ctx)
    for name, item in steps:
        if name == "watermark":
            ctx.watermark = item
            await op.on_watermark(item, ctx)
        else:
            ctx.input = name
            await op.on_frame(item, ctx)
    return {port: [ch.get_nowait() for _ in range(len(ch))] for port, ch in channels.items()}


def frames(items: list[Any]) -> pl.DataFrame:
    return pl.concat([x for x in items if isinstance(x, pl.DataFrame)])


async def test_late_trades_are_dropped_and_counted_or_sent_to_the_late_port() -> None:
    steps = [("trades", trades(["X"], [10])), ("quotes", quotes(["X"], [1])), ("watermark", 10)]
    steps += [("trades", trades(["X"], [5], first_seq=1)), ("watermark", END_OF_TIME)]
    op = AsofJoin()
    out = await feed(op, steps)
    assert frames(out["out"])["ts_event"].to_list() == [10]
    assert op.stats()["late_left"] == 1
    out = await feed(AsofJoin(late="side_output"), steps, ports=("out", "late"))
    assert frames(out["late"])["ts_event"].to_list() == [5]


async def test_side_output_without_an_edge_from_late_fails_at_open() -> None:
    with pytest.raises(MdpError, match="port 'late'"):
        await feed(AsofJoin(late="side_output"), [])


async def test_late_quotes_are_dropped_and_counted() -> None:
    steps = [("quotes", quotes(["X"], [10])), ("watermark", 20), ("quotes", quotes(["X"], [15], first_seq=1))]
    op = AsofJoin()
    out = await feed(op, [*steps, ("trades", trades(["X"], [30])), ("watermark", END_OF_TIME)])
    assert frames(out["out"])["bid"].to_list() == [0.0]
    assert op.stats()["late_right"] == 1


async def test_inputs_are_told_apart_by_name_and_an_unknown_one_fails() -> None:
    t, q = trades(["X"], [5]), quotes(["X"], [1])
    sink, _, _ = await join(AsofJoin(left="t", right="q"), [t], [q], names=("t", "q"))
    assert sink.frame["bid"].to_list() == [0.0]
    with pytest.raises(MdpError, match="neither the left input 'trades' nor the right input 'quotes'"):
        await feed(AsofJoin(), [("a", t)])


async def test_trades_before_any_quote_get_nulls() -> None:
    sink, _, _ = await join(AsofJoin(), [trades(["X"], [5])], [Watermark(100)])
    assert sink.frame.select(QUOTE_COLS).rows() == [(None,) * 5]


@pytest.mark.parametrize("strategy", ["backward", "forward", "nearest"])
async def test_trades_with_no_quote_ever_are_emitted_with_nulls_at_the_end(strategy: str) -> None:
    op = AsofJoin(strategy=strategy)  # type: ignore[arg-type]
    out = await feed(op, [("trades", trades(["X"], [5])), ("watermark", 100), ("watermark", END_OF_TIME)])
    assert frames(out["out"]).select(QUOTE_COLS).rows() == [(None,) * 5]
    assert op.stats()["matched"] == 0


async def test_held_quotes_are_pruned_behind_the_watermark() -> None:
    op, channel = AsofJoin(), Channel[Any](10_000)
    ctx = Context("join", {"out": [channel]})
    ctx.input = "quotes"
    for block in range(20):
        await op.on_frame(quotes(["X", "Y"] * 50, list(range(block * 100, block * 100 + 100)), block * 100), ctx)
        await op.on_watermark(block * 100 + 90, ctx)
        assert op.stats()["quotes_held"] <= 2 + 10  # the last of X and Y below, and the ten above
    assert op.snapshot()["quotes"].height <= 12
    resumed = AsofJoin()
    resumed.restore(op.snapshot())
    ctx.input = "trades"
    await resumed.on_frame(trades(["X", "Y"], [1995, 1996]), ctx)
    await resumed.on_watermark(END_OF_TIME, ctx)
    out = [x for x in (channel.get_nowait() for _ in range(len(channel))) if isinstance(x, pl.DataFrame)]
    assert out[-1].select("symbol", "quote_ts_event").rows() == [("X", 1994), ("Y", 1995)]


@pytest.mark.parametrize("strategy", ["forward", "nearest"])
async def test_forward_and_nearest_wait_for_a_quote_after_the_trade(strategy: str) -> None:
    t, q = trades(["X", "X", "Y"], [10, 20, 5]), quotes(["Y", "X", "X", "X"], [1, 8, 12, 30])
    steps = [("trades", t), ("quotes", q[:3]), ("watermark", 11)]
    out = await feed(AsofJoin(strategy=strategy), steps)  # type: ignore[arg-type]
    # at 11 the quote at 12 is not yet below the watermark: X@10 may still get a nearer quote at 10 or 11
    assert out["out"] == [Watermark(5)]  # held back to the oldest waiting trade
    steps += [("watermark", 13)]
    out = await feed(AsofJoin(strategy=strategy), steps)  # type: ignore[arg-type]
    assert frames(out["out"])["ts_event"].to_list() == [10]  # Y@5 has no quote after it yet, X@20 neither
    steps += [("quotes", q[3:]), ("watermark", END_OF_TIME)]
    out = await feed(AsofJoin(strategy=strategy), steps)  # type: ignore[arg-type]
    assert frames(out["out"]).sort("seq").equals(reference(t, q, strategy=strategy).sort("seq"))


def cut(frame: pl.DataFrame, sizes: list[int], jitter: int) -> list[Any]:
    """Frames of the given sizes, each followed by a watermark no later row can be behind."""
    items: list[Any] = []
    start, i, high = 0, 0, None
    while start < frame.height:
        part = frame[start : start + sizes[i % len(sizes)]]
        high = max(int(part["ts_event"].max()), high or 0)  # type: ignore[arg-type]
        items += [part, Watermark(high - jitter)]
        start, i = start + part.height, i + 1
    return items


def stream(symbols: str, n: int, data: st.DataObject, jitter: int, maker: Any, first_seq: int) -> pl.DataFrame:
    base = sorted(data.draw(st.lists(st.integers(0, 300), min_size=n, max_size=n)))
    ts = [b + data.draw(st.integers(0, jitter)) for b in base]
    syms = data.draw(st.lists(st.sampled_from(symbols), min_size=n, max_size=n))
    return maker(syms, ts, first_seq)  # type: ignore[no-any-return]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n_trades=st.integers(1, 60),
    n_quotes=st.integers(0, 80),
    strategy=st.sampled_from(["backward", "backward", "forward", "nearest"]),
    tolerance=st.sampled_from([None, None, 5, 40]),
)
def test_the_streaming_join_equals_polars_join_asof_on_the_same_data(
    data: st.DataObject, n_trades: int, n_quotes: int, strategy: str, tolerance: int | None
) -> None:
    jitter = data.draw(st.integers(0, 20))
    t = stream("AB", n_trades, data, jitter, trades, 0)
    q = stream("ABC", n_quotes, data, jitter, quotes, 1000)
    sizes = data.draw(st.lists(st.integers(1, 15), min_size=1, max_size=5))
    op = AsofJoin(strategy=strategy, tolerance=None if tolerance is None else f"{tolerance}ns")  # type: ignore[arg-type]
    sink, stats, _ = asyncio.run(join(op, cut(t, sizes, jitter), cut(q, sizes[::-1], jitter)))
    assert stats.counter("late_left") == stats.counter("late_right") == 0
    expected = reference(t, q, strategy=strategy, tolerance=tolerance).sort("seq")
    assert sink.frame.sort("seq").equals(expected)


def test_asof_params_reject_unknown_keys_and_build_the_operator() -> None:
    with pytest.raises(ValueError, match="extra"):
        AsofJoinParams.model_validate({"strategy": "backward", "window": "1s"})
    op = AsofJoin.from_params(AsofJoinParams.model_validate({"tolerance": "2s", "strategy": "nearest"}))
    assert (op.tolerance, op.strategy) == (2_000_000_000, "nearest")
    with pytest.raises(ConfigError, match=r"operator\.asof_join"):
        AsofJoin(strategy="sideways")  # type: ignore[arg-type]


async def test_window_join_matches_equal_keys_in_the_same_window_when_it_closes() -> None:
    left = pl.DataFrame({"symbol": ["X", "X", "Y", "X"], "ts_event": [1, 4, 3, 12], "price": [1.0, 2.0, 3.0, 4.0]})
    right = pl.DataFrame({"symbol": ["X", "Y", "X"], "ts_event": [5, 15, 11], "size": [7.0, 8.0, 9.0]})
    op = WindowJoin(window="10ns")
    sink, stats, _ = await join(op, [left, Watermark(9)], [right, Watermark(9)], names=("left", "right"))
    assert sink.frame.select("window_start", "window_end", "symbol", "price", "size").rows() == [
        (0, 10, "X", 1.0, 7.0),
        (0, 10, "X", 2.0, 7.0),
        (10, 20, "X", 4.0, 9.0),
    ]
    assert sink.frame["ts_event_right"].to_list() == [5, 5, 11]
    assert stats.nodes["join"].counters["joined"] == 3
    assert sink.watermarks == [0, END_OF_TIME]  # held to the start of the open window
    assert op.stats()["held_left"] == op.stats()["held_right"] == 0


async def test_window_join_left_keeps_unmatched_rows_and_drops_late_ones() -> None:
    op = WindowJoin(window="10ns", how="left")
    steps = [("left", pl.DataFrame({"symbol": ["X", "Y"], "ts_event": [1, 2]})), ("watermark", 3)]
    steps += [("right", pl.DataFrame({"symbol": ["X"], "ts_event": [5], "size": [1.0]}))]
    steps += [("left", pl.DataFrame({"symbol": ["X"], "ts_event": [2]})), ("watermark", END_OF_TIME)]
    out = await feed(op, steps)
    assert frames(out["out"]).select("symbol", "size").rows() == [("X", 1.0), ("Y", None)]
    assert op.stats()["late_left"] == 1


def test_window_join_params_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        WindowJoinParams.model_validate({"window": "1s", "tolerance": "1s"})
    assert WindowJoin.from_params(WindowJoinParams.model_validate({"window": "5s"})).window == 5_000_000_000


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n_left=st.integers(0, 40), n_right=st.integers(0, 40), window=st.sampled_from([7, 50, 1000]))
def test_the_window_join_equals_a_batch_join_on_window_and_key(
    data: st.DataObject, n_left: int, n_right: int, window: int
) -> None:
    t = stream("AB", n_left, data, 5, trades, 0).select("symbol", "ts_event", "seq")
    q = stream("AB", n_right, data, 5, quotes, 1000).select("symbol", "ts_event", "bid")
    sink, _, _ = asyncio.run(join(WindowJoin(window=f"{window}ns"), cut(t, [4], 5), cut(q, [3], 5), ("left", "right")))
    w = (pl.col("ts_event") // window).alias("w")
    expected = t.with_columns(w).join(q.with_columns(w), on=["symbol", "w"], suffix="_right")
    got = sink.frame.select(expected.drop("w").columns) if sink.items else expected.drop("w").clear()
    assert sorted(got.rows()) == sorted(expected.drop("w").rows())
