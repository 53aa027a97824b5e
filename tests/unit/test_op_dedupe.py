"""Dedupe: repeats dropped by key within a bounded event-time horizon, A/B feeds merged."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError, MdpError, NodeError
from mdp.operators.market.dedupe import Dedupe, DedupeParams
from mdp.records import Watermark, conform
from mdp.runtime.channel import Channel
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.testing import ListSink, ListSource, arun_operator, run_graph, run_operator

S = 1_000_000_000


def trades(symbols: list[str], ts: list[int], ids: list[int]) -> pl.DataFrame:
    frame = pl.DataFrame({"symbol": symbols, "ts_event": ts, "trade_id": [str(i) for i in ids]})
    return conform(frame.with_columns(price=pl.lit(1.0), size=pl.lit(1.0)), "trade")


def keys_of(frames: list[Any]) -> list[tuple[Any, ...]]:
    out = pl.concat([f for f in frames if isinstance(f, pl.DataFrame)])
    return out.select("symbol", "trade_id").rows()


async def test_repeats_inside_a_frame_and_across_frames_are_dropped() -> None:
    a = trades(["X", "X", "Y", "X"], [1, 2, 3, 2], [1, 2, 1, 2])
    b = trades(["X", "Y", "Z"], [1, 4, 5], [1, 2, 1])
    out = await arun_operator(Dedupe(key=["symbol", "trade_id"]), [a, b])
    assert keys_of(out) == [("X", "1"), ("X", "2"), ("Y", "1"), ("Y", "2"), ("Z", "1")]


async def test_the_first_arrival_of_a_key_is_the_one_kept() -> None:
    a = trades(["X", "X"], [1, 1], [7, 7]).with_columns(price=pl.Series([10.0, 20.0]))
    (out,) = await arun_operator(Dedupe(key=["symbol", "trade_id"]), [a])
    assert out["price"].to_list() == [10.0]


async def test_dropped_rows_are_counted_in_context_and_stats() -> None:
    sink, op = ListSink(), Dedupe(key=["symbol", "trade_id"])
    dag = Dag().add_node(Node("src", ListSource([trades(["X"] * 3, [1, 1, 1], [1, 1, 2])])))
    dag.add_node(Node("dedupe", op)).add_node(Node("sink", sink))
    stats = await run_graph(dag.add_edge("src", "dedupe").add_edge("dedupe", "sink"))
    assert stats.nodes["dedupe"].counters["duplicates"] == 1
    assert op.stats()["duplicates"] == 1
    assert op.stats()["passed"] == 2


async def drive(op: Dedupe, items: list[Any]) -> list[pl.DataFrame]:
    """Feed ``items`` to ``op`` by hand, without the end-of-input watermark that forgets every key."""
    channel: Channel[Any] = Channel(10_000)
    ctx = Context("dedupe", {"out": [channel]})
    for item in items:
        if isinstance(item, Watermark):
            ctx.watermark = item.ts
            await op.on_watermark(item.ts, ctx)
        else:
            await op.on_frame(item, ctx)
    return [channel.get_nowait() for _ in range(len(channel))]


async def test_keys_are_forgotten_once_the_watermark_passes_the_horizon() -> None:
    op = Dedupe(key=["symbol", "trade_id"], horizon="10s")
    await drive(op, [trades(["X"] * 100, [i * S // 10 for i in range(100)], list(range(100))), Watermark(5 * S)])
    assert op.keys_held == 100
    # 30 s later every key is older than watermark - horizon: all are forgotten
    await drive(op, [Watermark(40 * S), trades(["X"], [40 * S], [1000])])
    assert op.keys_held == 1


async def test_memory_stays_bounded_over_a_long_stream() -> None:
    op = Dedupe(key=["symbol", "trade_id"], horizon="2s")
    items: list[Any] = []
    for block in range(50):  # 50 s of event time, 1,000 rows a second
        ts = [block * S + i * S // 1000 for i in range(1000)]
        items += [trades(["X"] * 1000, ts, list(range(block * 1000, block * 1000 + 1000))), Watermark(ts[-1])]
    held = []
    for i in range(0, len(items), 2):
        await drive(op, items[i : i + 2])
        held.append(op.keys_held)
    assert op.stats()["passed"] == 50_000
    assert max(held) <= 1000 * 4  # horizon (2 s) + one bucket (0.5 s) + the last second, not 50,000


@pytest.mark.parametrize(("policy", "passed", "sided"), [("drop", 1, 0), ("pass", 2, 0), ("side_output", 1, 1)])
async def test_rows_older_than_the_horizon_follow_the_expired_policy(policy: str, passed: int, sided: int) -> None:
    out, expired = ListSink(), ListSink()
    items = [trades(["X"], [100 * S], [1]), Watermark(100 * S), trades(["X"], [50 * S], [2])]
    op = Dedupe(key=["symbol", "trade_id"], horizon="10s", expired=policy)  # type: ignore[arg-type]
    dag = Dag().add_node(Node("src", ListSource(items))).add_node(Node("d", op)).add_node(Node("out", out))
    dag.add_edge("src", "d").add_edge("d", "out")
    if policy == "side_output":
        dag.add_node(Node("expired", expired)).add_edge("d", "expired", port="expired")
    stats = await run_graph(dag)
    assert out.frame.height == passed
    assert (expired.frame.height if expired.items else 0) == sided
    assert stats.nodes["d"].counters["expired"] == 1


async def test_side_output_without_an_edge_from_expired_fails_at_open() -> None:
    with pytest.raises(NodeError, match="port 'expired'"):
        await arun_operator(Dedupe(expired="side_output"), [])


async def test_a_and_b_feeds_merge_into_each_trade_once() -> None:
    ts = [i * S // 100 for i in range(300)]
    full = trades(["X", "Y", "Z"] * 100, ts, list(range(300)))
    feed_a = full.filter(pl.int_range(pl.len()) % 7 != 3)  # each feed misses some trades, never the same
    feed_b = full.filter(pl.int_range(pl.len()) % 7 != 4)

    def cut(frame: pl.DataFrame, rows: int) -> list[Any]:
        items: list[Any] = []
        for start in range(0, frame.height, rows):
            part = frame[start : start + rows]
            items += [part, Watermark(int(part["ts_event"].max()) - S)]  # type: ignore[arg-type]
        return items

    sink, op = ListSink(), Dedupe(key=["symbol", "trade_id"], horizon="5s")
    dag = Dag().add_node(Node("a", ListSource(cut(feed_a, 17)))).add_node(Node("b", ListSource(cut(feed_b, 23))))
    dag.add_node(Node("dedupe", op)).add_node(Node("sink", sink))
    await run_graph(dag.add_edge("a", "dedupe").add_edge("b", "dedupe").add_edge("dedupe", "sink"))
    merged = sink.frame.sort("ts_event")
    assert merged.select("symbol", "trade_id").rows() == full.select("symbol", "trade_id").rows()
    lost = op.stats()["duplicates_by_input"]
    assert set(lost) <= {"a", "b"}
    assert sum(lost.values()) == feed_a.height + feed_b.height - full.height


async def test_snapshot_and_restore_continue_the_same_stream() -> None:
    first, second = trades(["X", "Y"], [1, 2], [1, 1]), trades(["X", "Y", "Z"], [3, 4, 5], [1, 2, 1])
    op = Dedupe(key=["symbol", "trade_id"])
    await drive(op, [first, Watermark(2)])
    resumed = Dedupe(key=["symbol", "trade_id"])
    resumed.restore(op.snapshot())
    out = await drive(resumed, [second])
    assert keys_of(out) == [("Y", "2"), ("Z", "1")]
    assert resumed.stats()["duplicates"] == 1


def test_state_hashed_by_another_polars_version_is_refused() -> None:
    state = Dedupe().snapshot()
    with pytest.raises(MdpError, match="polars version"):
        Dedupe().restore({**state, "hash": "polars-0.0.1"})


def test_params_reject_unknown_keys_and_build_the_operator() -> None:
    with pytest.raises(ValueError, match="extra"):
        DedupeParams.model_validate({"key": ["symbol"], "window": "1s"})
    op = Dedupe.from_params(DedupeParams.model_validate({"key": ["symbol", "trade_id"], "horizon": "30s"}))
    assert op.horizon == 30 * S
    assert Dedupe(horizon=5 * S).horizon == 5 * S  # an int from Python is ns
    with pytest.raises(ConfigError, match=r"operator\.dedupe"):
        Dedupe(key=[])


rows_strategy = st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 15)), min_size=1, max_size=120)


@pytest.mark.parametrize("key", [["symbol", "trade_id"], ["symbol", "ts_event", "trade_id"]])
@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy, cuts=st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_output_has_no_repeated_key_and_loses_no_unique_key(
    key: list[str], rows: list[tuple[str, int]], cuts: list[int]
) -> None:
    # a redelivered trade carries the same event time; ids 300 ms apart span two 2.5 s buckets
    frame = trades([r[0] for r in rows], [r[1] * 300_000_000 + ord(r[0]) for r in rows], [r[1] for r in rows])
    items: list[Any] = []
    start, i = 0, 0
    while start < frame.height:
        part = frame[start : start + cuts[i % len(cuts)]]
        items += [part, Watermark(int(part["ts_event"].min()))]  # type: ignore[arg-type]
        start, i = start + part.height, i + 1
    op = Dedupe(key=key, horizon="10s")  # longer than the whole stream: nothing expires
    out = keys_of(run_operator(op, items))
    assert len(out) == len(set(out))
    assert set(out) == set(frame.select("symbol", "trade_id").rows())
    assert op.stats()["duplicates"] == frame.height - len(out)
    assert op.stats()["expired"] == 0
