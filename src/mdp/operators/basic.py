"""Stateless operators: ``Map``, ``Filter``, and the pass-through ``Merge`` (fan-in) and ``Broadcast``
(fan-out).

``Map``/``Filter`` take a plain or ``async`` function applied to each message. A frame is one message:
the function gets the whole frame, or with ``rowwise=True`` each row as a dict (slow, for convenience),
or pass polars expressions (``exprs=``/``predicate=``) to stay vectorised. Watermarks pass through.

In a job file (``operator.map`` / ``operator.filter``) a function is named by its import path and an
expression is written in SQL, which polars parses (``pl.sql_expr``) without evaluating Python, so a
config file can never run code it does not name::

    - {id: notional, type: operator.map, params: {columns: {notional: "price * size"}}}
    - {id: positive, type: operator.filter, params: {where: "price > 0 AND size > 0"}}
    - {id: mine, type: operator.map, params: {function: "my_pkg.transforms:normalise"}}

Example::

    >>> import polars as pl
    >>> from mdp.testing import run_operator
    >>> run_operator(Map(lambda x: x * 2), [1, 2, 3])
    [2, 4, 6]
    >>> run_operator(Filter(predicate=pl.col("price") > 1), [pl.DataFrame({"price": [0.5, 2.0]})])[0].height
    1
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mdp.errors import MdpError
from mdp.runtime.operator import Context, Operator

_DataFrame = pl.DataFrame


def import_callable(target: str) -> Callable[..., Any]:
    """Return the callable named ``"package.module:name"`` (``ValueError`` saying why when it cannot)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a function is named 'package.module:function', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {target!r}: {exc}") from exc
    if not callable(obj):
        raise ValueError(f"{target!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]


def sql_expr(text: str) -> pl.Expr:
    """Parse a SQL expression (``"price * size"``) into a polars expression (``ValueError`` if it cannot)."""
    try:
        return pl.sql_expr(text)
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"cannot parse the SQL expression {text!r}: {exc}") from exc


class _FnParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str | None = Field(None, description="'package.module:callable' applied to each message")
    rowwise: bool = Field(False, description="call the function once per frame row (as a dict), not per frame")

    @field_validator("function")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            import_callable(value)
        return value


class MapParams(_FnParams):
    """``operator.map``: exactly one of ``function`` or ``columns``."""

    columns: dict[str, str] | None = Field(
        None, description="frame columns to add or replace: name -> SQL expression, e.g. {notional: 'price * size'}"
    )

    @field_validator("columns")
    @classmethod
    def _parse(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for expr in (value or {}).values():
            sql_expr(expr)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.function is None) == (self.columns is None):
            raise ValueError("operator.map needs exactly one of 'function' or 'columns'")
        return self


class FilterParams(_FnParams):
    """``operator.filter``: exactly one of ``function`` or ``where``."""

    where: str | None = Field(None, description="SQL condition rows must meet, e.g. 'price > 0 AND size > 0'")

    @field_validator("where")
    @classmethod
    def _parse(cls, value: str | None) -> str | None:
        if value is not None:
            sql_expr(value)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.function is None) == (self.where is None):
            raise ValueError("operator.filter needs exactly one of 'function' or 'where'")
        return self


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

    Params = MapParams

    @classmethod
    def from_params(cls, params: BaseModel) -> Self:
        """Build from ``MapParams``: an imported function, or SQL column expressions."""
        assert isinstance(params, MapParams)
        if params.columns is not None:
            return cls(exprs=[sql_expr(e).alias(name) for name, e in params.columns.items()])
        assert params.function is not None
        return cls(import_callable(params.function), rowwise=params.rowwise)

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

    Params = FilterParams

    @classmethod
    def from_params(cls, params: BaseModel) -> Self:
        """Build from ``FilterParams``: an imported predicate function, or a SQL condition."""
        assert isinstance(params, FilterParams)
        if params.where is not None:
            return cls(predicate=sql_expr(params.where))
        assert params.function is not None
        return cls(import_callable(params.function), rowwise=params.rowwise)

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
