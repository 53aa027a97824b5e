"""``Buffer``: micro-batching by count, rows or age, flushing the rest at a watermark and at close.

Items are emitted as lists; frames are concatenated into one frame per batch. The age check runs on
the operator's clock through a runtime timer (``ctx.notify_at``), so tests drive it with a ``ManualClock``
and an error while flushing fails the node at once.

Example::

    >>> from mdp.testing import run_operator
    >>> run_operator(Buffer(max_items=2), [1, 2, 3])
    [[1, 2], [3]]
"""

from __future__ import annotations

from typing import Any, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from mdp.durations import DurationNs, format_duration, seconds_or_duration
from mdp.errors import MdpError
from mdp.runtime.operator import Context, Operator
from mdp.timers import TimeDomain

_DataFrame = pl.DataFrame


class BufferParams(BaseModel):
    """``operator.buffer``: flush on whichever limit is reached first."""

    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(100, ge=1, description="emit when this many messages are held")
    max_rows: int | None = Field(None, ge=1, description="for frames, emit when this many rows are held")
    max_age: DurationNs | None = Field(None, description="emit when the oldest held message is this old ('250ms')")


class Buffer(Operator):
    """Collect messages and emit them in batches.

    Args:
        max_items: emit when this many messages are held.
        max_rows: for frames, emit when this many rows are held.
        max_age: emit when the oldest held message is this old (seconds or ``"250ms"``); None: never.
    """

    def __init__(
        self,
        max_items: int = 100,
        max_rows: int | None = None,
        max_age: float | str | None = None,
    ) -> None:
        if max_items < 1:
            raise MdpError(f"buffer max_items must be at least 1, got {max_items}")
        self.max_items = max_items
        self.max_rows = max_rows
        self.max_age_ns = seconds_or_duration(max_age) if max_age is not None else None
        self._held: list[Any] = []
        self._rows = 0
        self._oldest_ns = 0
        self.batches = 0

    Params = BufferParams

    @classmethod
    def from_params(cls, params: BaseModel) -> Self:
        """Build from ``BufferParams`` (``max_age`` arrives in ns)."""
        assert isinstance(params, BufferParams)
        age = format_duration(params.max_age) if params.max_age is not None else None
        return cls(params.max_items, params.max_rows, age)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if not self._held:
            self._oldest_ns = ctx.clock.now_ns()
            if self.max_age_ns is not None:
                ctx.notify_at(self._oldest_ns + self.max_age_ns)
        self._held.append(item)
        if type(item) is _DataFrame:
            self._rows += item.height
        if len(self._held) >= self.max_items or (self.max_rows is not None and self._rows >= self.max_rows):
            await self._flush(ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        await self._flush(ctx)
        await ctx.emit_watermark(watermark)

    @property
    def wants_timers(self) -> bool:
        return self.max_age_ns is not None

    async def on_timer(self, ts: int, domain: TimeDomain, ctx: Context) -> None:
        """The oldest held message may have reached ``max_age``: flush (a timer left from a batch that
        was flushed by count since finds a younger batch, and asks again for that one's age)."""
        if not self._held or self.max_age_ns is None:
            return
        due = self._oldest_ns + self.max_age_ns
        if due <= ctx.clock.now_ns():
            await self._flush(ctx)
        else:
            ctx.notify_at(due)

    async def on_close(self, ctx: Context) -> None:
        await self._flush(ctx)

    async def _flush(self, ctx: Context) -> None:
        if not self._held:
            return
        batch, self._held, self._rows = self._held, [], 0
        self.batches += 1
        if all(type(x) is _DataFrame for x in batch):
            await ctx.emit(pl.concat(batch, how="vertical_relaxed"))
        else:
            await ctx.emit(batch)

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def snapshot(self) -> dict[str, Any]:
        """The held batch (frames or plain items), its age and the batch count."""
        return {"held": list(self._held), "rows": self._rows, "oldest_ns": self._oldest_ns, "batches": self.batches}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what ``snapshot`` returned."""
        self._held, self._rows = list(state["held"]), state["rows"]
        self._oldest_ns, self.batches = state["oldest_ns"], state["batches"]
