"""What a bus message is: a frame as Arrow IPC, its partition, its watermark and its id (pure functions).

The codec of every bus: NATS (below), Redis and RabbitMQ (:mod:`mdp.buses.framing`) carry the same
payloads and ids; only where the kind, watermark and id ride differs (NATS headers as below, Redis
entry fields ``kind``/``wm``/``id``, AMQP headers ``mdp-kind``/``mdp-wm``/``mdp-id``).

One message carries one frame of rows of one partition, never one row: nats-py moves 5-15k JetStream
messages/s but 130-165 MB/s (``../shared/notes/buses-measured.md``), so the rows must ride in bulk. The
payload is an Arrow IPC stream of the frame in its kind's canonical schema, decoded by polars with no
per-row Python loop. Headers:

``Mdp-Kind``
    the record kind of the rows (``trade``, ``quote``, ``bar``, ``quote_bar``).
``Mdp-Watermark``
    the publisher's event-time watermark once this message's rows are in, for this partition: every row
    published on the partition after it has ``ts_event`` at or above it (late rows excepted). A message
    may carry only a watermark and no rows (empty payload).
``Nats-Msg-Id``
    :func:`message_id`, a digest of the partition, the watermark and the payload, so the same frame
    published again (a publisher restarted after a crash) has the same id and the server drops it.

A symbol's partition is ``crc32(utf-8 symbol) % partitions`` (:func:`partition_of`), computed by the
publisher, so one symbol always lands in one partition whatever process publishes it.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Iterator
from typing import Final, Literal

import polars as pl

from mdp.errors import BusError

KIND_HEADER: Final = "Mdp-Kind"
WATERMARK_HEADER: Final = "Mdp-Watermark"
ID_HEADER: Final = "Nats-Msg-Id"
#: a partition's subject is ``<subject>.p<k>``
PARTITION_PREFIX: Final = "p"

Compression = Literal["none", "lz4", "zstd"]


def partition_subject(subject: str, partition: int) -> str:
    """The subject partition ``partition`` of ``subject`` is published on: ``md.trades.p3``."""
    return f"{subject}.{PARTITION_PREFIX}{partition}"


def partition_of(symbol: str, partitions: int) -> int:
    """The partition of ``symbol``: ``crc32(utf-8 bytes) % partitions``."""
    return zlib.crc32(symbol.encode()) % partitions


def partition_column(symbols: pl.Series, partitions: int) -> pl.Series:
    """The partition of each row's symbol (crc32 is computed once per distinct symbol, not per row).

    Raises:
        BusError: a row has no symbol, so it has no partition.
    """
    if symbols.null_count():
        raise BusError("a frame published to the bus has rows without a symbol; every row needs one for its partition")
    distinct = symbols.unique()
    parts = [partition_of(s, partitions) for s in distinct.to_list()]
    return symbols.replace_strict(distinct, parts, return_dtype=pl.Int32).alias("__p")


def split_by_partition(frame: pl.DataFrame, partitions: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """``frame``'s rows per partition, each part in the frame's row order, partitions ascending."""
    if frame.height == 0:
        return
    if partitions == 1:
        yield 0, frame
        return
    grouped = frame.with_columns(partition_column(frame.get_column("symbol"), partitions)).partition_by(
        "__p", as_dict=True, maintain_order=True, include_key=False
    )
    for key in sorted(grouped, key=lambda k: int(k[0])):  # type: ignore[call-overload]
        yield int(key[0]), grouped[key]  # type: ignore[call-overload]


def encode_frame(frame: pl.DataFrame, compression: Compression = "none") -> bytes:
    """``frame`` as Arrow IPC stream bytes."""
    buf = io.BytesIO()
    frame.write_ipc_stream(buf, compression="uncompressed" if compression == "none" else compression)
    return buf.getvalue()


def decode_frame(payload: bytes) -> pl.DataFrame:
    """The frame in an Arrow IPC stream payload.

    Raises:
        BusError: the payload is not an Arrow IPC stream (something else publishes on the subject).
    """
    try:
        return pl.read_ipc_stream(io.BytesIO(payload))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise BusError(
            f"a bus message of {len(payload):,} bytes is not an Arrow IPC frame ({exc}); only mdp's sink.nats "
            "may publish on the partition subjects a source.nats reads"
        ) from exc


def message_id(partition: int, watermark: int, payload: bytes) -> str:
    """The ``Nats-Msg-Id`` of a message: the same frame, partition and watermark always give the same id."""
    digest = hashlib.blake2b(payload, digest_size=16, person=b"mdp-bus-v1")
    digest.update(f"{partition}:{watermark}".encode())
    return f"p{partition}-{digest.hexdigest()}"


def headers(kind: str, partition: int, watermark: int, payload: bytes) -> dict[str, str]:
    """The headers of one message (see the module docstring)."""
    return {
        KIND_HEADER: kind,
        WATERMARK_HEADER: str(watermark),
        ID_HEADER: message_id(partition, watermark, payload),
    }


def read_watermark(hdrs: dict[str, str] | None) -> int | None:
    """The watermark a message carries, or None (a message from another publisher)."""
    if not hdrs:
        return None
    text = hdrs.get(WATERMARK_HEADER)
    return None if text is None else int(text)


__all__ = [
    "ID_HEADER",
    "KIND_HEADER",
    "WATERMARK_HEADER",
    "Compression",
    "decode_frame",
    "encode_frame",
    "headers",
    "message_id",
    "partition_column",
    "partition_of",
    "partition_subject",
    "read_watermark",
    "split_by_partition",
]
