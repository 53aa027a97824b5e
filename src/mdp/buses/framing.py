"""What ``sink.redis`` / ``sink.rabbitmq`` and their sources share: frames cut into bus entries and joined back.

The entries are those of :mod:`mdp.buses.wire` (one frame of one partition as Arrow IPC, its watermark
and its digest id), so every bus carries the same bytes and a frame published on NATS, Redis or
RabbitMQ decodes the same. A bus module supplies only how an entry is written (:meth:`FrameSink._write`,
:meth:`FrameSink._flush`) and how entries are read; :class:`Entry` is what a reader hands to
:meth:`FrameReader.deliver`, which skips what it sent already, emits one frame and the watermark.

Where the frames are cut depends only on each input frame (nothing is held from one to the next), so a
publisher run again over the same input writes the same entries with the same ids: what lets a bus drop
a republished frame (see each sink's docstring for how).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdp.buses.wire import Compression, decode_frame, encode_frame, message_id, split_by_partition
from mdp.errors import BusError, ConfigError
from mdp.records import END_OF_TIME, RecordKind, conform
from mdp.runtime.operator import NO_WATERMARK, Context, Sink, Source


class FrameSinkParams(BaseModel):
    """The fields every frame sink has besides where its bus is."""

    model_config = ConfigDict(extra="forbid")

    kind: RecordKind = Field(default="trade", description="record kind arriving: trade, quote, bar or quote_bar")
    partitions: int = Field(
        ge=1, le=4096, description="number of partitions; a symbol's is crc32(symbol) % partitions (fixed per stream)"
    )
    frame_rows: int = Field(default=16_384, ge=1, description="most rows per bus entry")
    compression: Compression = Field(
        default="none", description="Arrow IPC body compression: none, lz4 or zstd (smaller entries, more CPU)"
    )


class FrameSink(Sink):
    """Split frames by partition into entries of at most ``frame_rows`` rows; publish each watermark to every
    partition (an entry without rows) but the input's final one (the stream goes on after this publisher).

    Subclasses set ``self.fparams`` and implement :meth:`_write` (queue one entry) and :meth:`_flush`
    (wait until every queued entry is stored).
    """

    fparams: FrameSinkParams
    counts: dict[str, int]

    def _init_framing(self, fparams: FrameSinkParams) -> None:
        self.fparams = fparams
        self._published_wm = [NO_WATERMARK] * fparams.partitions
        self.counts = {"messages": 0, "rows": 0, "bytes": 0, "watermark_messages": 0, "duplicates": 0, "retries": 0}

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        step = self.fparams.frame_rows
        for k, part in split_by_partition(frame, self.fparams.partitions):
            for start in range(0, part.height, step):
                rows = part.slice(start, step)
                await self._entry(k, encode_frame(rows, self.fparams.compression), ctx.watermark)
                self.counts["rows"] += rows.height

    async def on_item(self, item: Any, ctx: Context) -> None:
        if not isinstance(item, pl.DataFrame):
            raise BusError(
                f"a bus sink publishes frames of {self.fparams.kind} rows, got a {type(item).__name__}; "
                "put the records in a frame upstream"
            )
        await self.on_frame(item, ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        if watermark >= END_OF_TIME:
            return
        for k in range(self.fparams.partitions):
            if watermark > self._published_wm[k]:
                await self._entry(k, b"", watermark)
                self.counts["watermark_messages"] += 1

    async def on_close(self, ctx: Context) -> None:
        await self._flush()

    async def _entry(self, k: int, payload: bytes, watermark: int) -> None:
        await self._write(k, payload, watermark, message_id(k, watermark, payload))
        self._published_wm[k] = max(self._published_wm[k], watermark)
        self.counts["messages"] += 1
        self.counts["bytes"] += len(payload)

    async def _write(self, k: int, payload: bytes, watermark: int, entry_id: str) -> None:
        raise NotImplementedError

    async def _flush(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Entry:
    """One bus entry as read: its partition, its offset on the bus, kind, watermark (None: not ours) and rows."""

    partition: int
    offset: Any
    kind: str | None
    watermark: int | None
    payload: bytes


class FrameReader:
    """The position of a frame source (per partition: last offset sent downstream and its watermark) and the
    delivery of entries read: skip those at or before the position, emit their rows as one frame, move on.

    ``order`` maps an offset to something comparable (Redis ids are ``ms-seq`` strings).
    """

    def __init__(self, kind: str, parts: Sequence[int], start: Any, name: str) -> None:
        self.kind = kind
        self.name = name
        self.parts = list(parts)
        self._start = start
        self.offsets: dict[int, Any] = dict.fromkeys(self.parts, start)
        self.watermarks: dict[int, int] = dict.fromkeys(self.parts, NO_WATERMARK)
        self.rows_emitted = 0
        self.messages = 0

    def order(self, offset: Any) -> Hashable:
        return offset  # type: ignore[no-any-return]

    def snapshot(self) -> dict[str, Any]:
        return {"offsets": dict(self.offsets), "watermarks": dict(self.watermarks), "rows": self.rows_emitted}

    def restore(self, state: dict[str, Any]) -> None:
        offsets = {int(k): v for k, v in state["offsets"].items()}
        if set(offsets) != set(self.parts):
            raise BusError(
                f"the checkpoint of this {self.name} read partitions {sorted(offsets)}, this one reads {self.parts}; "
                "keep params.read and params.partitions as they were, or start without the checkpoint"
            )
        self.offsets = offsets
        self.watermarks = {int(k): int(v) for k, v in state["watermarks"].items()}
        self.rows_emitted = int(state["rows"])

    def after(self, k: int, offset: Any) -> bool:
        """Whether ``offset`` of partition ``k`` comes after the position (not sent yet)."""
        return bool(self.order(offset) > self.order(self.offsets[k]))  # type: ignore[operator]

    async def deliver(self, entries: Sequence[Entry], ctx: Context, parts: Sequence[int] | None = None) -> int:
        """Emit the rows of ``entries`` (in order per partition) not sent yet, then the watermark over ``parts``
        (default: every partition read). Returns the entries taken."""
        frames: list[pl.DataFrame] = []
        taken = 0
        for e in entries:
            if not self.after(e.partition, e.offset):
                continue
            if e.kind is not None and e.kind != self.kind:
                raise BusError(
                    f"partition {e.partition} carries {e.kind} rows at offset {e.offset}, this {self.name} reads "
                    f"{self.kind}; fix params.kind or the stream name"
                )
            if e.payload:
                frames.append(decode_frame(e.payload))
            if e.watermark is not None:
                self.watermarks[e.partition] = max(self.watermarks[e.partition], e.watermark)
            self.offsets[e.partition] = e.offset
            taken += 1
        if frames:
            frame = pl.concat(frames, how="vertical_relaxed", rechunk=False) if len(frames) > 1 else frames[0]
            if frame.height:
                await ctx.emit(conform(frame, self.kind))  # type: ignore[arg-type]
                self.rows_emitted += frame.height
        self.messages += taken
        wm_parts = parts or self.parts
        wm = min(self.watermarks[k] for k in wm_parts)
        if wm > NO_WATERMARK:
            await ctx.emit_watermark(wm)
        return taken


__all__ = ["Entry", "FrameReader", "FrameSink", "FrameSinkParams"]


class FrameSourceParams(BaseModel):
    """The params every frame source shares: the record kind it reads and which partitions."""

    kind: RecordKind = Field(default="trade", description="record kind on the stream: trade, quote, bar or quote_bar")
    read: list[int] | Literal["all"] = Field(
        default="all", description="the partitions this source reads: 'all' or a list such as [0, 3, 7]"
    )

    @field_validator("read")
    @classmethod
    def _distinct(cls, v: list[int] | Literal["all"]) -> list[int] | Literal["all"]:
        if isinstance(v, list) and (len(set(v)) != len(v) or not v or min(v) < 0):
            raise ValueError("expected 'all' or a non-empty list of distinct partition numbers >= 0")
        return v


class FrameSource(Source):
    """What the Redis and RabbitMQ sources share: params validated once, the partitions they read, and a
    :class:`FrameReader` whose per-partition offsets are the source's checkpoint (``snapshot``/``restore``).

    ``stats()`` reports ``rows_emitted``, ``messages``, ``offsets`` and ``reconnects``.
    """

    #: the component id, for messages
    component: ClassVar[str]
    #: the offset a partition starts from when nothing was restored
    start_offset: ClassVar[Any]

    def __init__(self, **params: Any) -> None:
        assert self.Params is not None
        try:
            p = self.Params.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid {self.component} params: {exc}") from exc
        assert isinstance(p, FrameSourceParams)
        setattr(self, "output_kind", p.kind)  # noqa: B010 - graph validation reads it per instance
        partitions: int = getattr(p, "partitions")  # noqa: B009 - every bus's params name their partition count
        if p.read != "all" and max(p.read) >= partitions:
            raise ConfigError(
                f"{self.component} reads partition {max(p.read)}, but the stream has {partitions}; "
                "fix params.read or params.partitions"
            )
        parts = list(range(partitions)) if p.read == "all" else sorted(p.read)
        self.params: Any = p
        self.reader = self.make_reader(p.kind, parts)
        self.reconnects = 0

    def make_reader(self, kind: str, parts: list[int]) -> FrameReader:
        """The reader of ``parts`` (a bus whose offsets do not compare as they are overrides ``order``)."""
        return FrameReader(kind, parts, self.start_offset, self.component)

    @classmethod
    def from_params(cls, params: BaseModel) -> Self:
        return cls(**params.model_dump())

    @property
    def offsets(self) -> dict[int, Any]:
        return self.reader.offsets

    def snapshot(self) -> dict[str, Any]:
        """Per partition the offset last sent downstream and its watermark."""
        return self.reader.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        """Make the next run read each partition after its offset in ``state``."""
        self.reader.restore(state)

    def stats(self) -> dict[str, Any]:
        r = self.reader
        return {
            "rows_emitted": r.rows_emitted,
            "messages": r.messages,
            "offsets": dict(r.offsets),
            "reconnects": self.reconnects,
        }
