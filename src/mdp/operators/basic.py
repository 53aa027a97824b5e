"""Stateless operators: ``Map``, ``Filter``, and the pass-through ``Merge`` (fan-in) and ``Broadcast``
(fan-out).

``Map``/``Filter`` take a plain or ``async`` function applied to each message. A frame is one message:
the function gets the whole frame, or with ``rowwise=True`` each row as a dict (slow, for convenience),
or pass polars expressions (``exprs=``/``predicate=``) to stay vectorised. Watermarks pass through.

Example::

    >>> import polars as pl
    >>> from mdp.testing import run_operator
    >>> run_operator(Map(lambda x: x * 2), [1, 2, 3])
    [2, 4, 6]
    >>> run_operator(Filter(predicate=pl.col("price") > 1), [pl.DataFrame({"price": [0.5, 2.0]})])[0].height
    1
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import polars as pl

from mdp.errors import MdpError
from mdp.operators.base import Context, Operator

_DataFrame = pl.DataFrame


class Map(Operator):
    """Apply ``fn`` to every message (or ``exprs`` to every frame) and emit the result.

    Args:
        fn: ``fn(item) -> item``, plain or async.
        exprs: polars expressions added with ``frame.with_columns`` (frames only).
        rowwise: give ``fn`` each row of a frame as a dict and rebuild the frame from its results.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any] | None = None,
        *,
        exprs: list[pl.Expr] | pl.Expr | None = None,
        rowwise: bool = False,
    ) -> None:
        if (fn is None) == (exprs is None):
            raise MdpError("map needs exactly one of fn= or exprs=")
        self.fn = fn
        self.exprs = [exprs] if isinstance(exprs, pl.Expr) else exprs
        self.rowwise = rowwise
        self.is_async = fn is not None and inspect.iscoroutinefunction(fn)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if type(item) is _DataFrame:
            if self.exprs is not None:
                await ctx.emit(item.with_columns(self.exprs))
                return
            if self.rowwise:
                rows = [await self._call(row) for row in item.iter_rows(named=True)]
                await ctx.emit(pl.DataFrame(rows) if rows else item.clear())
                return
        elif self.fn is None:
            raise MdpError("map with exprs= only works on frames; got " + type(item).__name__)
        await ctx.emit(await self._call(item))

    async def _call(self, item: Any) -> Any:
        assert self.fn is not None
        result = self.fn(item)
        return await result if self.is_async else result


class Filter(Operator):
    """Emit only the messages for which ``fn`` is true (or the frame rows matching ``predicate``).

    Args:
        fn: ``fn(item) -> bool``, plain or async. With ``rowwise=True`` it is called per row of a frame.
        predicate: a polars boolean expression applied with ``frame.filter`` (frames only).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any] | None = None,
        *,
        predicate: pl.Expr | None = None,
        rowwise: bool = False,
    ) -> None:
        if (fn is None) == (predicate is None):
            raise MdpError("filter needs exactly one of fn= or predicate=")
        self.fn = fn
        self.predicate = predicate
        self.rowwise = rowwise
        self.is_async = fn is not None and inspect.iscoroutinefunction(fn)

    async def on_item(self, item: Any, ctx: Context) -> None:
        if type(item) is _DataFrame:
            if self.predicate is not None:
                out = item.filter(self.predicate)
            elif self.rowwise:
                mask = [bool(await self._call(row)) for row in item.iter_rows(named=True)]
                out = item.filter(pl.Series(mask, dtype=pl.Boolean))
            else:
                if await self._call(item):
                    await ctx.emit(item)
                return
            if out.height:
                await ctx.emit(out)
            return
        if self.fn is None:
            raise MdpError("filter with predicate= only works on frames; got " + type(item).__name__)
        if await self._call(item):
            await ctx.emit(item)

    async def _call(self, item: Any) -> Any:
        assert self.fn is not None
        result = self.fn(item)
        return await result if self.is_async else result


class Merge(Operator):
    """Fan-in: forward messages from every input; the watermark is the minimum over the inputs."""


class Broadcast(Operator):
    """Fan-out: forward every message to every edge leaving ``out`` (each edge has its own channel)."""
