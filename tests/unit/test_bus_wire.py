"""The bus wire format: partitions by crc32, frames as Arrow IPC, message ids that repeat for a republish."""

from __future__ import annotations

import zlib

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.buses.nats_sink import NatsSink
from mdp.buses.nats_source import NatsSource
from mdp.buses.wire import (
    decode_frame,
    encode_frame,
    headers,
    message_id,
    partition_of,
    partition_subject,
    read_watermark,
    split_by_partition,
)
from mdp.config.registry import builtin_registry
from mdp.errors import BusError, ConfigError
from mdp.stores.samples import round_trip_frames


def test_a_symbols_partition_is_its_crc32_modulo_the_partition_count() -> None:
    assert partition_of("BTCUSDT", 12) == zlib.crc32(b"BTCUSDT") % 12
    assert partition_subject("md.trades", 3) == "md.trades.p3"


@settings(max_examples=60, deadline=None)
@given(
    symbols=st.lists(st.sampled_from(["A", "BB", "binance:BTCUSDT", "ÄÖ", "x" * 30, "Z9"]), min_size=0, max_size=80),
    partitions=st.integers(1, 16),
)
def test_splitting_keeps_every_row_once_in_order_on_its_symbols_partition(symbols: list[str], partitions: int) -> None:
    frame = pl.DataFrame(
        {"symbol": symbols, "i": list(range(len(symbols)))}, schema={"symbol": pl.String, "i": pl.Int64}
    )
    parts = list(split_by_partition(frame, partitions))
    assert [k for k, _ in parts] == sorted({k for k, _ in parts})
    seen: list[int] = []
    for k, part in parts:
        assert all(partition_of(s, partitions) == k for s in part["symbol"].to_list())
        assert part["i"].to_list() == sorted(part["i"].to_list())  # the frame's order within a partition
        seen += part["i"].to_list()
    assert sorted(seen) == list(range(len(symbols)))


def test_a_row_without_a_symbol_has_no_partition() -> None:
    frame = pl.DataFrame({"symbol": ["A", None]})
    with pytest.raises(BusError, match="without a symbol"):
        list(split_by_partition(frame, 4))


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_every_kind_round_trips_through_arrow_ipc(compression: str) -> None:
    for kind, frame in round_trip_frames().items():
        got = decode_frame(encode_frame(frame, compression))  # type: ignore[arg-type]
        assert got.equals(frame), kind
        assert got.schema == frame.schema


def test_a_payload_that_is_not_a_frame_is_refused_with_the_reason() -> None:
    with pytest.raises(BusError, match="not an Arrow IPC frame"):
        decode_frame(b"hello")


def test_the_same_frame_partition_and_watermark_give_the_same_id_and_any_change_another() -> None:
    payload = encode_frame(pl.DataFrame({"symbol": ["A"], "x": [1]}))
    same = message_id(3, 100, payload)
    assert same == message_id(3, 100, bytes(payload))
    assert len({same, message_id(2, 100, payload), message_id(3, 101, payload), message_id(3, 100, b"")}) == 4
    hdrs = headers("trade", 3, 100, payload)
    assert hdrs["Nats-Msg-Id"] == same
    assert read_watermark(hdrs) == 100
    assert hdrs["Mdp-Kind"] == "trade"
    assert read_watermark(None) is None


def test_both_components_are_registered_with_strict_described_params() -> None:
    registry = builtin_registry()
    for cid in ("sink.nats", "source.nats"):
        info = registry.get(cid).describe()
        assert info["available"], info["error"]
        assert {"url", "stream", "subject", "partitions"} <= set(info["params"])
        assert all(p["description"] for p in info["params"].values())
    with pytest.raises(ConfigError, match="partitons"):
        NatsSink(stream="S", subject="s", partitions=2, partitons=3)


def test_reading_a_partition_the_stream_does_not_have_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"fix params\.read"):
        NatsSource(stream="S", subject="s", partitions=4, read=[4])
    with pytest.raises(ConfigError, match="distinct"):
        NatsSource(stream="S", subject="s", partitions=4, read=[1, 1])
