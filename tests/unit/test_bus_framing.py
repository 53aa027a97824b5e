"""The pieces the Redis and RabbitMQ buses share: Redis id order, and a reader that never sends an entry twice."""

from __future__ import annotations

import asyncio

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from mdp.buses.framing import Entry, FrameReader
from mdp.buses.redis_bus import id_order
from mdp.buses.wire import encode_frame
from mdp.clock import ManualClock
from mdp.records import SCHEMAS, conform
from mdp.testing import _Recording

ids = st.tuples(st.integers(0, 2**48), st.integers(0, 2**20))


@given(ids, ids)
def test_redis_ids_order_as_redis_does_ms_then_seq(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (id_order(f"{a[0]}-{a[1]}") < id_order(f"{b[0]}-{b[1]}".encode())) == (a < b)


def frame(seqs: list[int]) -> pl.DataFrame:
    n = len(seqs)
    return conform(
        pl.DataFrame(
            {"symbol": ["A"] * n, "ts_event": seqs, "ts_recv": seqs, "price": [1.0] * n, "size": [1.0] * n, "seq": seqs}
        ),
        "trade",
    ).select(list(SCHEMAS["trade"]))


@given(st.lists(st.integers(0, 30), min_size=1, max_size=40))
def test_an_entry_at_or_before_the_position_is_never_sent_again(offsets: list[int]) -> None:
    """Whatever order and repeats entries arrive in (a redelivery, a consumer started again), each offset's
    rows go downstream at most once and the position only moves forward."""
    reader = FrameReader("trade", [0], -1, "test")
    ctx = _Recording(ManualClock())

    async def run() -> None:
        for off in offsets:
            await reader.deliver([Entry(0, off, "trade", off, encode_frame(frame([off])))], ctx)

    asyncio.run(run())
    sent = [int(s) for port, f in ctx.sent if port == "out" for s in f["seq"]]
    assert len(sent) == len(set(sent))
    assert sent == sorted(sent)
    assert reader.offsets[0] == max(offsets)
