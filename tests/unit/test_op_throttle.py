"""Throttle: per-key token buckets in event time (deterministic) and processing time (ManualClock)."""

from __future__ import annotations

import asyncio
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.clock import ManualClock
from mdp.errors import ConfigError
from mdp.operators.market.throttle import Throttle, ThrottleParams
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.channel import Channel
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context
from mdp.testing import ListSink, ListSource, fire_timers, run_graph, run_operator

MS = 1_000_000
S = 1_000_000_000


def rows(symbols: list[str], ts: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"symbol": symbols, "ts_event": ts, "seq": list(range(len(ts)))})


def reference(frame: pl.DataFrame, rate: float, burst: int, policy: str) -> list[tuple[str, int, int]]:
    """GCRA one row at a time in plain Python: (symbol, seq, time it went out), in event-time order."""
    interval = -(-S // rate) if float(rate).is_integer() else int(-(-1e9 // rate))
    tau = (burst - 1) * interval
    out: list[tuple[str, int, int]] = []
    for (symbol,), part in frame.sort(["symbol", "ts_event", "seq"]).group_by("symbol", maintain_order=True):
        tat, pending = -(2**62), None
        for ts, seq in part.select("ts_event", "seq").iter_rows():
            if pending is not None and tat - tau <= ts:
                out.append((str(symbol), pending, tat - tau))
                tat, pending = tat + interval, None
            if pending is None and ts >= tat - tau:
                out.append((str(symbol), seq, ts))
                tat = max(tat, ts) + interval
            elif policy == "keep_last":
                pending = seq
            elif policy == "delay":
                start = max(ts, tat - tau)
                out.append((str(symbol), seq, start))
                tat = max(tat, ts) + interval
        if pending is not None:
            out.append((str(symbol), pending, tat - tau))
    return sorted(out, key=lambda r: (r[2], r[1]))


def event_items(frame: pl.DataFrame, sizes: list[int]) -> list[Any]:
    items: list[Any] = []
    start, i = 0, 0
    while start < frame.height:
        part = frame[start : start + sizes[i % len(sizes)]]
        items += [part, Watermark(int(part["ts_event"].max()))]  # type: ignore[arg-type]
        start, i = start + part.height, i + 1
    return items


def test_drop_lets_one_row_through_per_token() -> None:
    frame = rows(["X"] * 5, [0, 10 * MS, 20 * MS, 600 * MS, 1200 * MS])
    op = Throttle(rate=2)
    (out,) = run_operator(op, [frame])
    assert out["ts_event"].to_list() == [0, 600 * MS, 1200 * MS]
    assert op.stats()["per_key"] == {"X": {"passed": 3, "dropped": 2, "conflated": 0, "delayed": 0}}


def test_burst_lets_that_many_rows_through_at_once() -> None:
    (out,) = run_operator(Throttle(rate=1, burst=3), [rows(["X"] * 5 + ["Y"] * 2, [0] * 7)])
    assert out["symbol"].to_list() == ["X", "X", "X", "Y", "Y"]


def test_keep_last_sends_the_newest_waiting_row_when_the_next_token_comes() -> None:
    frame = rows(["X"] * 4, [0, 100 * MS, 200 * MS, 300 * MS])
    op = Throttle(rate=2, policy="keep_last", release_column="sent")
    out = pl.concat(run_operator(op, [frame]))
    assert out.select("seq", "sent").rows() == [(0, 0), (3, 500 * MS)]
    assert op.stats()["conflated"] == 2


def test_delay_drops_nothing_and_spaces_rows_by_the_interval() -> None:
    op = Throttle(rate=10, policy="delay", release_column="sent")
    out = pl.concat(run_operator(op, [rows(["X"] * 4, [0, 0, 0, 250 * MS])]))
    assert out["sent"].to_list() == [0, 100 * MS, 200 * MS, 300 * MS]
    assert op.stats()["delayed"] == 3


async def test_rows_are_held_until_the_watermark_and_the_watermark_is_held_for_waiting_rows() -> None:
    sink = ListSink()
    items = [rows(["X"] * 3, [0, 1, 2]), Watermark(1), Watermark(3 * S)]
    dag = Dag().add_node(Node("src", ListSource(items))).add_node(Node("t", Throttle(rate=1, policy="keep_last")))
    await run_graph(dag.add_node(Node("sink", sink)).add_edge("src", "t").add_edge("t", "sink"))
    assert [f["seq"].to_list() for f in sink.items] == [[0], [2]]
    assert sink.watermarks == [1, 3 * S, END_OF_TIME]
    sink = ListSink()
    dag = Dag().add_node(Node("src", ListSource([rows(["X"] * 2, [0, 1]), Watermark(5)])))
    dag.add_node(Node("t", Throttle(rate=0.1, policy="keep_last"))).add_node(Node("sink", sink))
    await run_graph(dag.add_edge("src", "t").add_edge("t", "sink"))
    assert sink.watermarks == [1, END_OF_TIME]  # row 1 waits for its token (10 s): the watermark stays at 1


async def test_late_rows_are_counted_and_still_throttled() -> None:
    sink = ListSink()
    items = [rows(["X"], [10 * S]), Watermark(11 * S), rows(["X"], [5 * S])]
    dag = Dag().add_node(Node("src", ListSource(items))).add_node(Node("t", Throttle(rate=1)))
    stats = await run_graph(dag.add_node(Node("sink", sink)).add_edge("src", "t").add_edge("t", "sink"))
    assert stats.nodes["t"].counters["late"] == 1
    assert sink.frame["ts_event"].to_list() == [10 * S]  # the 10 s row took the token; at 5 s there is none


@settings(max_examples=80, deadline=None)
@given(
    data=st.lists(st.tuples(st.sampled_from("AB"), st.integers(0, 3_000)), min_size=1, max_size=120),
    rate=st.sampled_from([1, 3, 7, 250]),
    burst=st.integers(1, 4),
    policy=st.sampled_from(["drop", "keep_last", "delay"]),
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=4),
)
def test_never_more_than_rate_times_time_plus_burst_and_equal_to_a_plain_gcra(
    data: list[tuple[str, int]], rate: int, burst: int, policy: str, sizes: list[int]
) -> None:
    data = sorted(data, key=lambda r: r[1])
    frame = rows([d[0] for d in data], [d[1] * MS for d in data])
    op = Throttle(rate=rate, burst=burst, policy=policy, release_column="sent")  # type: ignore[arg-type]
    out = pl.concat(run_operator(op, event_items(frame, sizes)))
    got = sorted(out.select("symbol", "seq", "sent").rows(), key=lambda r: (r[2], r[1]))
    assert got == reference(frame, rate, burst, policy)
    for _, part in out.group_by("symbol"):
        sent = sorted(part["sent"].to_list())
        for i in range(len(sent)):  # every span [sent[i], sent[j]] holds j - i + 1 rows
            for j in range(i, len(sent)):
                assert j - i + 1 <= rate * (sent[j] - sent[i]) / S + burst
    if policy == "delay":
        assert out.height == frame.height


class Harness:
    """Drive a processing-time throttle by hand with a ManualClock."""

    def __init__(self, op: Throttle) -> None:
        self.op, self.clock, self.channel = op, ManualClock(0), Channel[Any](10_000)
        self.ctx = Context("throttle", {"out": [self.channel]}, self.clock)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)
        await fire_timers(self.op, self.ctx)
        await self.settle()

    def taken(self) -> list[int]:
        frames = [
            x for x in (self.channel.get_nowait() for _ in range(len(self.channel))) if isinstance(x, pl.DataFrame)
        ]
        return pl.concat(frames)["seq"].to_list() if frames else []


async def test_processing_time_drop_counts_tokens_on_the_clock() -> None:
    h = Harness(Throttle(rate=1, burst=2, time="processing"))
    await h.op.open(h.ctx)
    await h.op.on_frame(rows(["X"] * 5, [0] * 5), h.ctx)
    assert h.taken() == [0, 1]
    await h.advance(1.0)
    await h.op.on_frame(rows(["X"] * 3, [0] * 3).with_columns(seq=pl.Series([5, 6, 7])), h.ctx)
    assert h.taken() == [5]
    assert h.op.stats()["dropped"] == 5
    await h.op.on_close(h.ctx)


async def test_processing_time_keep_last_releases_on_a_timer_not_per_row() -> None:
    h = Harness(Throttle(rate=2, policy="keep_last", time="processing"))
    await h.op.open(h.ctx)
    await h.op.on_frame(rows(["X"] * 4, [0] * 4), h.ctx)
    await h.settle()
    assert h.taken() == [0]
    assert len(h.ctx.timers) == 1  # one timer until the next token, whatever the rows waiting
    await h.advance(0.25)
    assert h.taken() == []
    await h.advance(0.25)
    assert h.taken() == [3]
    assert h.op.stats()["conflated"] == 2
    await h.op.on_close(h.ctx)


async def test_processing_time_delay_sends_everything_and_close_waits_for_the_tokens() -> None:
    h = Harness(Throttle(rate=4, policy="delay", time="processing"))
    await h.op.open(h.ctx)
    await h.op.on_frame(rows(["X"] * 3, [0] * 3), h.ctx)
    await h.settle()
    assert h.taken() == [0]
    await h.advance(0.25)
    assert h.taken() == [1]
    closing = asyncio.create_task(h.op.on_close(h.ctx))
    await h.settle()
    assert not closing.done()
    await h.advance(0.25)
    await closing
    assert h.taken() == [2]


def test_snapshot_and_restore_carry_the_buckets() -> None:
    op = Throttle(rate=1)
    run_operator(op, [rows(["X"], [0])])
    resumed = Throttle(rate=1)
    resumed.restore(op.snapshot())
    assert run_operator(resumed, [rows(["X", "X"], [S // 2, S])])[0]["ts_event"].to_list() == [S]


def test_params_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match="extra"):
        ThrottleParams.model_validate({"rate": 1, "period": "1s"})
    with pytest.raises(ConfigError, match="greater than 0"):
        Throttle(rate=0)
    op = Throttle.from_params(ThrottleParams.model_validate({"rate": 3, "burst": 2, "policy": "keep_last"}))
    assert (op.interval, op.tau) == (333_333_334, 333_333_334)  # rounded up: never faster than 3 a second
