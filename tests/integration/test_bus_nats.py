"""sink.nats and source.nats on the real NATS JetStream server: round trip, dedupe, caught_up, seek, crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdp.buses.nats_partition import PartitionReader
from mdp.buses.nats_sink import NatsSink
from mdp.buses.nats_source import NatsSource
from mdp.buses.wire import partition_of
from mdp.errors import BusError, NodeError
from mdp.records import SCHEMAS, Watermark
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSink, ListSource, SourceHarness, run_graph, wait_until
from tests.conftest import NATS_URL

pytestmark = pytest.mark.services

KEY = ["symbol", "ts_event", "seq"]


def make_trades(n: int, symbols: int = 40, seed: int = 1, origin: int = 1_723_161_600_000_000_000) -> pl.DataFrame:
    """``n`` trades over ``symbols`` symbols, in event-time order, one millisecond apart."""
    rng = np.random.default_rng(seed)
    ts = origin + np.arange(n, dtype=np.int64) * 1_000_000
    return pl.DataFrame(
        {
            "symbol": [f"S{i:03d}" for i in rng.integers(0, symbols, n)],
            "ts_event": ts,
            "ts_recv": ts + 5,
            "price": rng.uniform(10, 20, n),
            "size": rng.uniform(0.1, 2, n),
            "seq": np.arange(n, dtype=np.int64),
        }
    ).pipe(lambda f: f.with_columns(pl.lit(None, pl.String).alias(c) for c in ("trade_id", "venue", "conditions")))


def with_watermarks(trades: pl.DataFrame, frame_rows: int) -> list[Any]:
    """The messages a replay sends: frames, each followed by its newest event time as the watermark."""
    items: list[Any] = []
    for start in range(0, trades.height, frame_rows):
        frame = trades.slice(start, frame_rows).select(list(SCHEMAS["trade"]))
        items += [frame, Watermark(int(frame["ts_event"].max()))]
    return items


class Bus:
    """A unique stream on the real server, deleted after the test."""

    def __init__(self, url: str, partitions: int = 4) -> None:
        self.url = url
        self.stream = f"MDPTEST_{uuid.uuid4().hex[:10]}"
        self.subject = f"mdptest.{self.stream.lower()}"
        self.partitions = partitions

    def params(self, **more: Any) -> dict[str, Any]:
        return {"url": self.url, "stream": self.stream, "subject": self.subject, "partitions": self.partitions, **more}

    async def publish(self, items: list[Any], **more: Any) -> NatsSink:
        sink = NatsSink(**self.params(create_stream=True, **more))
        dag = Dag()
        dag.add_node(Node("src", ListSource(items, kind="trade")))
        dag.add_node(Node("bus", sink))
        dag.add_edge("src", "bus")
        await run_graph(dag)
        return sink

    async def consume(self, **more: Any) -> tuple[NatsSource, ListSink]:
        source = NatsSource(**self.params(until="caught_up", **more))
        out = ListSink()
        dag = Dag()
        dag.add_node(Node("bus", source))
        dag.add_node(Node("out", out))
        dag.add_edge("bus", "out")
        await run_graph(dag)
        return source, out

    async def messages(self) -> int:
        import nats

        nc = await nats.connect(self.url)
        try:
            info = await nc.jetstream().stream_info(self.stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    async def messages_or_none(self) -> int | None:
        """The stream's message count, or None if it does not exist yet."""
        try:
            return await self.messages()
        except Exception:
            return None

    async def delete(self) -> None:
        import nats

        nc = await nats.connect(self.url)
        try:
            await nc.jetstream().delete_stream(self.stream)
        except Exception:
            pass
        finally:
            await nc.close()


@pytest.fixture
def bus(nats_url: str) -> Iterator[Bus]:
    b = Bus(nats_url)
    yield b
    asyncio.run(b.delete())


def rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(list(SCHEMAS["trade"])).sort(KEY)


async def test_what_is_consumed_equals_what_was_published_row_for_row_and_per_symbol_in_order(bus: Bus) -> None:
    trades = make_trades(30_000)
    sink = await bus.publish(with_watermarks(trades, 4_000), frame_rows=3_000)
    source, out = await bus.consume()
    got = out.frame
    assert rows(got).equals(rows(trades))
    for symbol in ("S001", "S017"):  # one symbol's rows come in the order they were published
        assert (
            got.filter(pl.col("symbol") == symbol)["seq"].to_list()
            == trades.filter(pl.col("symbol") == symbol)["seq"].to_list()
        )
    assert sink.stats()["rows"] == source.stats()["rows_emitted"] == 30_000
    assert out.watermarks[-2] == int(trades["ts_event"].max())  # then the end of time, as every source ends


async def test_each_symbol_lands_on_its_crc32_partition(bus: Bus) -> None:
    trades = make_trades(5_000)
    await bus.publish(with_watermarks(trades, 5_000))
    for k in range(bus.partitions):
        _, out = await bus.consume(read=[k])
        symbols = set(out.frame["symbol"].to_list()) if out.frame.height else set()
        assert symbols
        assert all(partition_of(s, bus.partitions) == k for s in symbols)


async def test_no_row_comes_behind_a_watermark_already_sent(bus: Bus) -> None:
    trades = make_trades(20_000)
    await bus.publish(with_watermarks(trades, 1_000), frame_rows=700)
    source = NatsSource(**bus.params(until="caught_up", fetch_batch=3))
    harness = SourceHarness(source)
    await harness.run()
    wm = -(2**63)
    for port, item in harness.sent:
        if port == "watermark":
            assert item >= wm
            wm = item
        else:
            assert int(item["ts_event"].min()) >= wm
    assert wm == int(trades["ts_event"].max())


async def test_a_frame_published_again_after_a_crash_is_dropped_by_the_server(bus: Bus) -> None:
    trades = make_trades(24_000)
    items = with_watermarks(trades, 2_000)
    await bus.publish(items[:9])  # the publisher "crashed" after four and a half frames
    first = await bus.messages()
    again = await bus.publish(items)  # restarted from the start of its input
    assert again.stats()["duplicates"] == first > 0
    _, out = await bus.consume()
    assert rows(out.frame).equals(rows(trades))
    other = Bus(bus.url)
    try:
        await other.publish(items)
        assert await bus.messages() == await other.messages()  # as if it had never crashed
    finally:
        await other.delete()


async def test_caught_up_ends_at_what_was_there_at_the_start_and_on_an_empty_stream(bus: Bus) -> None:
    await bus.publish([])  # creates the stream, publishes nothing
    _, out = await bus.consume()
    assert out.frame.height == 0
    assert out.closed
    trades = make_trades(6_000)
    await bus.publish(with_watermarks(trades, 1_500))
    _, out = await bus.consume()
    assert out.frame.height == 6_000


async def test_a_live_source_stops_when_asked_and_reads_what_arrives_meanwhile(bus: Bus) -> None:
    await bus.publish([])
    trades = make_trades(3_000)
    source = NatsSource(**bus.params())
    harness = SourceHarness(source)
    task = asyncio.create_task(harness.run())
    await bus.publish(with_watermarks(trades, 1_000))
    await wait_until(lambda: source.rows_emitted >= trades.height, timeout=20)
    harness.ctx.request_stop()
    await task
    assert source.rows_emitted == 3_000


@pytest.mark.parametrize("stop_after", [1, 4, 9])
async def test_restore_resumes_each_partition_after_its_offset(bus: Bus, stop_after: int) -> None:
    trades = make_trades(30_000)
    await bus.publish(with_watermarks(trades, 1_000), frame_rows=500)
    small = bus.params(until="caught_up", fetch_batch=2, frame_rows=600, linger=0)  # many frames to stop between
    first = SourceHarness(NatsSource(**small), stop_after=stop_after)
    await first.run()
    state = first.snapshot()
    second = SourceHarness.restored(NatsSource(**bus.params(until="caught_up")), state)
    await second.run()
    sent = [item for port, item in first.sent + second.sent if port == "out"]
    both = pl.concat(sent)
    assert both.height == trades.height  # nothing lost, nothing twice
    assert rows(both).equals(rows(trades))
    assert 0 < sum(f.height for p, f in first.sent if p == "out") < trades.height


async def test_durable_consumers_are_acked_only_through_the_given_offsets(bus: Bus) -> None:
    trades = make_trades(8_000)
    await bus.publish(with_watermarks(trades, 1_000))
    durable = f"w{uuid.uuid4().hex[:6]}"
    source = NatsSource(**bus.params(until="caught_up", durable=durable, read=[0]))
    harness = SourceHarness(source)
    await harness.run()
    import nats

    nc = await nats.connect(bus.url)
    try:
        js = nc.jetstream()
        before = await js.consumer_info(bus.stream, f"{durable}_p0")
        assert before.ack_floor.stream_seq == 0
        assert before.num_ack_pending > 0
        source._nc = nc  # the source's own connection closed with its run; ack through the test's
        half = sorted(s for s, _ in source._unacked[0])[len(source._unacked[0]) // 2]
        assert await source.ack_through({0: half}) == 1
        await nc.flush()
        await asyncio.sleep(0.2)
        after = await js.consumer_info(bus.stream, f"{durable}_p0")
        assert after.ack_floor.stream_seq == half
    finally:
        await nc.close()
    # restarted without a checkpoint, the durable source goes on after what was acked, at once
    again = NatsSource(**bus.params(until="caught_up", durable=durable, read=[0]))
    rerun = SourceHarness(again)
    await rerun.run(timeout=20)
    first_rows = [f for p, f in harness.sent if p == "out"]
    later = pl.concat([f for p, f in rerun.sent if p == "out"])
    assert again.offsets[0] == source.offsets[0]
    assert 0 < later.height < sum(f.height for f in first_rows)
    assert rows(later).equals(rows(pl.concat(first_rows).tail(later.height)))


async def test_a_missing_stream_fails_with_the_fix_in_the_message(bus: Bus) -> None:
    source = NatsSource(**bus.params(until="caught_up"))
    dag = Dag()
    dag.add_node(Node("bus", source))
    dag.add_node(Node("out", ListSink()))
    dag.add_edge("bus", "out")
    with pytest.raises(NodeError) as info:
        await run_graph(dag)
    assert isinstance(info.value.cause, BusError)
    assert "does not exist" in str(info.value.cause)
    assert "create_stream" in str(info.value.cause)


def test_a_publisher_killed_mid_batch_loses_and_doubles_nothing(bus: Bus, tmp_path: Path) -> None:
    trades = make_trades(400_000, symbols=200)
    data = tmp_path / "trades.parquet"
    trades.write_parquet(data)
    job = tmp_path / "publish.yaml"
    job.write_text(
        f"""job: publish
mode: dag
dag:
  nodes:
    - id: trades
      type: source.replay
      params: {{path: {data}, frame_rows: 8192, adaptive_rate: false}}
    - id: bus
      type: sink.nats
      params: {{url: "{bus.url}", stream: {bus.stream}, subject: {bus.subject}, partitions: {bus.partitions},
                create_stream: true, frame_rows: 1000, ack_batch: 64}}
  edges:
    - [trades, bus]
"""
    )
    cmd = [sys.executable, "-m", "mdp", "run", "--config", str(job)]
    env = {**os.environ, "MDP_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:  # kill it once some batches are in
        try:
            stored = asyncio.run(bus.messages())
        except Exception:
            stored = 0
        if stored >= 60:
            break
        time.sleep(0.02)
    assert proc.poll() is None, (
        f"the publisher ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert stored > 0
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    _, out = asyncio.run(bus.consume())
    got = out.frame
    assert got.height == trades.height
    assert rows(got).equals(rows(trades))


class RobbedReader(PartitionReader):
    """A partition reader whose first consumer has three messages pulled away by another client before
    it reads: for it they are lost on the way, as when a server cuts a slow connection."""

    stolen = 0

    async def start(self, after: int) -> int:
        import nats

        start = await super().start(after)
        if self.reseeks == 0:
            nc = await nats.connect(NATS_URL)
            try:
                thief = await nc.jetstream().pull_subscribe_bind(consumer=self.name, stream=self.spec.stream)
                RobbedReader.stolen += len(await thief.fetch(3, timeout=5))
            finally:
                await nc.close()
        return start


class RobbedSource(NatsSource):
    reader = RobbedReader


async def test_messages_lost_between_server_and_reader_are_read_again(bus: Bus) -> None:
    trades = make_trades(12_000)
    await bus.publish(with_watermarks(trades, 1_000))
    _, out = await bus.consume(read=[0], fetch_batch=2)
    robbed = RobbedSource(**bus.params(until="caught_up", read=[0], fetch_batch=2))
    harness = SourceHarness(robbed)
    await harness.run()
    got = pl.concat([f for p, f in harness.sent if p == "out"])
    assert RobbedReader.stolen == 3
    assert robbed.reseeks == 1  # the jump in consumer sequence was seen, and the partition read again
    assert rows(got).equals(rows(out.frame))
    assert got.height > 0


async def test_reading_or_publishing_with_another_partition_count_is_refused(bus: Bus) -> None:
    await bus.publish([])  # the stream records 4 partitions
    wrong = Bus(bus.url, partitions=6)
    wrong.stream, wrong.subject = bus.stream, bus.subject
    for run in (wrong.consume(), wrong.publish([])):
        with pytest.raises(NodeError) as info:
            await run
        assert "in 4 partitions, not 6" in str(info.value.cause)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stop_after=st.integers(1, 40), fetch_batch=st.integers(1, 5), frame_rows=st.sampled_from([300, 2_000, 65_536]))
def test_a_stop_and_restore_anywhere_gives_every_row_once(
    bus: Bus, stop_after: int, fetch_batch: int, frame_rows: int
) -> None:
    """Random cut, equal result: whatever the moment of the stop and the read sizes, the rows before the
    snapshot and the rows after the restore are the stream, each row once."""
    trades = make_trades(20_000, symbols=60, seed=3)

    async def scenario() -> pl.DataFrame:
        if await bus.messages_or_none() is None:
            await bus.publish(with_watermarks(trades, 900), frame_rows=400)
        params = bus.params(until="caught_up", fetch_batch=fetch_batch, frame_rows=frame_rows, linger=0)
        first = SourceHarness(NatsSource(**params), stop_after=stop_after)
        await first.run()
        second = SourceHarness.restored(NatsSource(**params), first.snapshot())
        await second.run()
        return pl.concat([f for p, f in first.sent + second.sent if p == "out"])

    both = asyncio.run(scenario())
    assert both.height == trades.height
    assert rows(both).equals(rows(trades))


async def test_a_frame_above_the_servers_payload_limit_is_cut_into_messages_that_fit(bus: Bus) -> None:
    trades = make_trades(40_000).with_columns(pl.format("{}-{}", pl.lit("x" * 100), pl.col("seq")).alias("trade_id"))
    sink = await bus.publish(with_watermarks(trades, 40_000), frame_rows=1_000_000)  # one frame of 5+ MB
    assert sink.stats()["bytes"] > 4 << 20
    # without the cut, one message per partition and one for the watermark; 1 MB a message at most
    assert sink.stats()["messages"] - bus.partitions >= sink.stats()["bytes"] / (1 << 20) > bus.partitions
    _, out = await bus.consume()
    assert rows(out.frame).equals(rows(trades))
