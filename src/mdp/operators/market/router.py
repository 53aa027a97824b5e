"""``Router``: send each row of a frame to a named output port, by column value or by predicate.

Three ways to say where a row goes:

- ``values``: the row goes to the port named after its value in ``column`` (``values=["BTCUSDT"]``
  gives port ``BTCUSDT``);
- ``routes``: port -> list of values of ``column`` (``{"spot": ["binance-spot"], ...}``);
- ``predicates``: port -> boolean expression (a polars SQL expression string such as
  ``"price * size > 100000"``, or a ``pl.Expr`` from Python), tried in order.

With ``match: first`` a row goes to the first port that matches; with ``match: all`` to every port that
matches. A row that matches none goes to the ``default`` port (``unmatched: default``) or stops the job
with an error naming the values (``unmatched: error``): a row is never dropped silently. The output
ports are declared from the params, so graph validation rejects an edge from a port that does not
exist. Routing is one vectorised join or ``when/then`` chain per frame; watermarks go to every port.

Every declared port must be connected (a row sent to a port without an edge would vanish), so
``open`` fails naming the ports that are not; connect a sink you do not need to a discarding node.

Example::

    >>> import asyncio
    >>> import polars as pl
    >>> from mdp.runtime.graph import Dag, Node
    >>> from mdp.testing import ListSink, ListSource, run_graph
    >>> frame = pl.DataFrame({"venue": ["binance-spot", "binance-usdm", "kraken"], "price": [1.0, 2.0, 3.0]})
    >>> router = Router(column="venue", routes={"spot": ["binance-spot"], "futures": ["binance-usdm"]})
    >>> router.outputs
    ('spot', 'futures', 'default')
    >>> sinks = {port: ListSink() for port in router.outputs}
    >>> dag = Dag().add_node(Node("src", ListSource([frame]))).add_node(Node("route", router)).add_edge("src", "route")
    >>> for port, sink in sinks.items():
    ...     _ = dag.add_node(Node(port, sink)).add_edge("route", port, port=port)
    >>> _ = asyncio.run(run_graph(dag))
    >>> {port: sink.frame["venue"].to_list() for port, sink in sinks.items()}
    {'spot': ['binance-spot'], 'futures': ['binance-usdm'], 'default': ['kraken']}
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mdp.errors import ConfigError, MdpError
from mdp.runtime.operator import Context, Operator

Scalar = str | int | float | bool
_PORT = "__mdp_port"


class RouterParams(BaseModel):
    """Config of ``operator.router``: exactly one of ``values``, ``routes`` or ``predicates``."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, description="the column whose value picks the port")
    values: list[Scalar] | None = Field(default=None, description="values of column, each routed to a port of its name")
    routes: dict[str, list[Scalar]] | None = Field(default=None, description="port -> values of column")
    predicates: dict[str, str] | None = Field(default=None, description="port -> SQL boolean expression, in order")
    match: Literal["first", "all"] = Field(default="first", description="first matching port, or every one")
    unmatched: Literal["default", "error"] = Field(default="default", description="where a row matching no port goes")
    default_port: str = Field(default="default", min_length=1, description="name of the port for unmatched rows")

    @model_validator(mode="after")
    def _one_rule(self) -> RouterParams:
        given = [name for name in ("values", "routes", "predicates") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"router needs exactly one of values, routes or predicates; got {given or 'none'}")
        if given[0] != "predicates" and self.column is None:
            raise ValueError(f"router with {given[0]} needs column: the column whose value picks the port")
        if given[0] == "predicates" and self.column is not None:
            raise ValueError("router with predicates takes no column; the expressions name their columns")
        return self


class Router(Operator):
    """Route rows to named ports by value of ``column`` or by predicate (see the module docstring).

    Args:
        column: the column whose value picks the port (``values``/``routes``).
        values: each value routes to the port of the same name.
        routes: port -> values.
        predicates: port -> SQL expression string or ``pl.Expr``.
        match: ``first`` or ``all`` matching ports.
        unmatched: ``default`` (port ``default_port``) or ``error``.
        default_port: the port for rows that match nothing.

    Raises:
        MdpError: two ports share a name, or ``unmatched='error'`` and a row matches no port.
    """

    Params = RouterParams

    def __init__(
        self,
        column: str | None = None,
        values: list[Scalar] | None = None,
        routes: dict[str, list[Scalar]] | None = None,
        predicates: dict[str, str | pl.Expr] | None = None,
        match: Literal["first", "all"] = "first",
        unmatched: Literal["default", "error"] = "default",
        default_port: str = "default",
    ) -> None:
        texts = (
            None if predicates is None else {p: e if isinstance(e, str) else "<expr>" for p, e in predicates.items()}
        )
        try:
            params = RouterParams(
                column=column,
                values=values,
                routes=routes,
                predicates=texts,
                match=match,
                unmatched=unmatched,
                default_port=default_port,
            )
        except ValidationError as exc:
            raise ConfigError(f"operator.router: {exc}") from exc
        self.column = params.column
        self.match = params.match
        self.unmatched = params.unmatched
        self.default_port = params.default_port
        self.predicates: list[pl.Expr] | None = None
        self.table: dict[str, list[Scalar]] | None = None
        if predicates is not None:
            ports = list(predicates)
            self.predicates = [pl.sql_expr(e) if isinstance(e, str) else e for e in predicates.values()]
        else:
            self.table = (
                {str(v): [v] for v in params.values} if params.values is not None else dict(params.routes or {})
            )
            ports = list(self.table)
        if len(set(ports)) != len(ports) or (unmatched == "default" and default_port in ports):
            raise ConfigError(
                f"operator.router: ports must have distinct names; got {ports} and default port {default_port!r}"
            )
        self.ports: tuple[str, ...] = tuple(ports)
        self.outputs = (*self.ports, default_port) if unmatched == "default" else self.ports
        self._mapping: pl.DataFrame | None = None
        self.routed: dict[str, int] = dict.fromkeys(self.outputs, 0)

    async def open(self, ctx: Context) -> None:
        loose = [port for port in self.outputs if not ctx.connected(port)]
        if loose:
            raise MdpError(
                f"router {ctx.node!r}: the ports {loose} have no edge, so rows routed there would be lost; "
                f"connect every port (ports are {list(self.outputs)})"
            )

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        if self.predicates is not None and self.match == "all":
            await self._route_all(frame, ctx)
            return
        tagged = self._tag(frame, ctx)
        for (index,), part in tagged.partition_by(_PORT, as_dict=True, maintain_order=True).items():
            rows = part.drop(_PORT)
            if index is None:
                await self._unmatched(rows, ctx)
            else:
                await self._send(rows, self.ports[index], ctx)

    def _tag(self, frame: pl.DataFrame, ctx: Context) -> pl.DataFrame:
        """Add the port index of every row (null when no port matches)."""
        if self.predicates is not None:
            chain: Any = pl
            for i, pred in enumerate(self.predicates):
                chain = chain.when(pred.fill_null(False)).then(pl.lit(i, dtype=pl.Int32))
            return frame.with_columns(chain.otherwise(pl.lit(None, dtype=pl.Int32)).alias(_PORT))
        assert self.column is not None
        if self.column not in frame.columns:
            raise MdpError(f"router {ctx.node!r}: the frame has no column {self.column!r}; it has {frame.columns}")
        mapping = self._value_table(frame.schema[self.column])
        return frame.join(mapping, on=self.column, how="left", maintain_order="left", nulls_equal=False)

    def _value_table(self, dtype: pl.DataType) -> pl.DataFrame:
        """value -> port index, in the column's dtype; a value listed twice keeps its first port unless match=all."""
        if self._mapping is None or self._mapping.schema[str(self.column)] != dtype:
            assert self.table is not None
            values = [v for vs in self.table.values() for v in vs]
            index = [i for i, vs in enumerate(self.table.values()) for _ in vs]
            table = pl.DataFrame(
                {str(self.column): pl.Series(values, strict=False).cast(dtype), _PORT: index},
                schema_overrides={_PORT: pl.Int32},
            )
            if self.match == "first":
                table = table.unique(subset=str(self.column), keep="first", maintain_order=True)
            self._mapping = table
        return self._mapping

    async def _route_all(self, frame: pl.DataFrame, ctx: Context) -> None:
        assert self.predicates is not None
        masks = frame.select([p.fill_null(False).alias(str(i)) for i, p in enumerate(self.predicates)])
        for i, port in enumerate(self.ports):
            await self._send(frame.filter(masks.get_column(str(i))), port, ctx)
        none = ~masks.select(pl.any_horizontal(pl.all())).to_series()
        if none.any():
            await self._unmatched(frame.filter(none), ctx)

    async def _unmatched(self, rows: pl.DataFrame, ctx: Context) -> None:
        ctx.count("unmatched", rows.height)
        if self.unmatched == "error":
            sample = rows.head(3).to_dicts() if self.column is None else rows[self.column].unique().head(5).to_list()
            raise MdpError(
                f"router {ctx.node!r}: {rows.height} rows match no route, e.g. {sample}; "
                "add a route for them or set unmatched: default"
            )
        await self._send(rows, self.default_port, ctx)

    async def _send(self, rows: pl.DataFrame, port: str, ctx: Context) -> None:
        if rows.height == 0:
            return
        self.routed[port] += rows.height
        ctx.count(f"routed.{port}", rows.height)
        await ctx.emit(rows, port)

    def stats(self) -> dict[str, Any]:
        return {"routed": dict(self.routed)}

    def snapshot(self) -> dict[str, Any]:
        """Counters only: routing is stateless."""
        return {"routed": dict(self.routed)}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        self.routed.update(state["routed"])
