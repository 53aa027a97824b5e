"""``sink.discard``: the explicit end of an output a job does not keep.

A node output that reaches no edge is an error at ``mdp validate`` and ``mdp run`` (see
``Dag.validate``), because a forgotten sink loses every bar without a word. A job that really means to
drop a stream (a benchmark, a dry run, a check-only operator) says so by ending it in ``sink.discard``,
which counts what it drops so the summary still shows it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel

from mdp.runtime.operator import Context, Sink


class Discard(Sink):
    """Drop every record that arrives, counting the rows and frames."""

    Params: ClassVar[type[BaseModel] | None] = None

    def __init__(self) -> None:
        self.rows = 0
        self.frames = 0

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        self.rows += frame.height
        self.frames += 1

    async def on_item(self, item: Any, ctx: Context) -> None:
        if isinstance(item, pl.DataFrame):
            await self.on_frame(item, ctx)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        """Nothing downstream: a watermark ends here."""

    def stats(self) -> dict[str, Any]:
        return {"discarded_rows": self.rows, "discarded_frames": self.frames}
