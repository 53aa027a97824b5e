"""The component registry: string ids in job files (``operator.bars``) → component classes.

Built-in entries are lazy ``"module:Class"`` strings, imported only when a job uses them, so a module
that is missing or broken (say an optional dependency is not installed) breaks only the ids it
provides, with a ``ConfigError`` that says so, never the rest. Third-party packages add components
through the entry-point group ``mdp.components``: each entry point loads either a component class
with a ``component_id`` attribute or a callable that receives the registry and registers what it likes::

    [project.entry-points."mdp.components"]
    my_ticks = "my_pkg.mdp_plugin:register"      # def register(registry): registry.register(...)

What a plugin's ``register`` adds is recorded with the plugin as its origin, so a clash names the plugin.
The seed's spellings work too: ``register_operator(id, fn)`` with ``async def fn(inputs, outputs, **params)``
and ``register_provider(id, MyProvider)`` with a plain provider class (see :mod:`mdp.config.seed_nodes`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import json
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from mdp.config.seed_nodes import Target, adapt, is_seed_target
from mdp.durations import format_duration
from mdp.errors import ConfigError
from mdp.runtime.operator import Operator, Sink

Kind = Literal["source", "operator", "sink"]
ENTRY_POINT_GROUP = "mdp.components"

#: id, kind, "module:Class", description
BUILTINS: tuple[tuple[str, Kind, str, str], ...] = (
    (
        "source.replay",
        "source",
        "mdp.sources.replay:ReplaySource",
        "replay trades or quotes from a CSV, Parquet or Databento DBN file",
    ),
    ("source.dbn_bars", "source", "mdp.sources.dbn_bars:DbnBarsSource", "Databento DBN OHLCV bars as bar frames"),
    ("source.synthetic", "source", "mdp.sources.synthetic:SyntheticSource", "a seeded synthetic trade or quote feed"),
    ("source.store", "source", "mdp.stores.source:StoreSource", "read records back from a store"),
    (
        "source.ibkr",
        "source",
        "mdp.brokers.ibkr:IbkrSource",
        "live tick-by-tick trades or quotes from Interactive Brokers (TWS / IB Gateway)",
    ),
    (
        "provider.ibkr.stream",
        "source",
        "mdp.brokers.ibkr:IbkrSource",
        "the seed's name of source.ibkr",
    ),
    ("source.arcticdb", "source", "mdp.stores.source:ArcticdbSource", "read records back from an ArcticDB library"),
    (
        "source.nats",
        "source",
        "mdp.buses.nats_source:NatsSource",
        "read frames and watermarks from partitions of a NATS JetStream stream",
    ),
    ("operator.map", "operator", "mdp.operators.basic:Map", "add or replace frame columns, or apply a function"),
    ("operator.filter", "operator", "mdp.operators.basic:Filter", "keep the rows matching a condition"),
    ("operator.buffer", "operator", "mdp.operators.buffer:Buffer", "micro-batch by count, rows or age"),
    ("operator.bars", "operator", "mdp.operators.bars:BarsOperator", "event-time OHLCV bars from trades"),
    ("operator.bars_of_bars", "operator", "mdp.operators.bars.rebar:Rebar", "bars of bars on aligned boundaries"),
    (
        "operator.threshold_bars",
        "operator",
        "mdp.operators.bars.threshold:ThresholdBars",
        "tick, volume or dollar bars from trades",
    ),
    ("operator.quote_bars", "operator", "mdp.operators.bars.quotes:QuoteBars", "bid/ask/mid OHLC and spreads"),
    (
        "operator.processing_time_bars",
        "operator",
        "mdp.operators.bars.processing_time:ProcessingTimeBars",
        "bars by wall-clock interval (flushing)",
    ),
    (
        "operator.dedupe",
        "operator",
        "mdp.operators.market.dedupe:Dedupe",
        "drop repeated keys within an event-time horizon",
    ),
    ("operator.throttle", "operator", "mdp.operators.market.throttle:Throttle", "cap the rows per second of each key"),
    (
        "operator.router",
        "operator",
        "mdp.operators.market.router:Router",
        "route rows to named ports by value or predicate",
    ),
    (
        "operator.sequence_check",
        "operator",
        "mdp.operators.market.sequence:SequenceCheck",
        "report sequence gaps and repeats",
    ),
    (
        "operator.asof_join",
        "operator",
        "mdp.operators.market.join:AsofJoin",
        "join each row to the nearest earlier row by key",
    ),
    (
        "operator.window_join",
        "operator",
        "mdp.operators.market.join:WindowJoin",
        "join two streams by key within windows",
    ),
    ("operator.resample", "operator", "mdp.operators.market.resample:QuoteResample", "last quote per key and interval"),
    ("operator.nbbo", "operator", "mdp.operators.market.nbbo:Consolidate", "consolidated best bid and offer of venues"),
    ("sink.sqlite", "sink", "mdp.stores.sink:SqliteSink", "upsert records into a SQLite file (WAL)"),
    ("sink.duckdb", "sink", "mdp.stores.sink:DuckdbSink", "upsert records into a DuckDB file"),
    ("sink.postgres", "sink", "mdp.stores.sink:PostgresSink", "upsert records into PostgreSQL"),
    (
        "sink.nats",
        "sink",
        "mdp.buses.nats_sink:NatsSink",
        "publish frames to NATS JetStream, partitioned by crc32(symbol)",
    ),
    ("sink.parquet", "sink", "mdp.stores.sink:ParquetSink", "write records to Parquet, partitioned by date and symbol"),
    ("sink.arcticdb", "sink", "mdp.stores.sink:ArcticdbSink", "upsert records into an ArcticDB library (LMDB, S3)"),
    (
        "sink.deadletter",
        "sink",
        "mdp.stores.deadletter:DeadLetterSink",
        "append rejected rows with their reason to a file",
    ),
    ("sink.discard", "sink", "mdp.operators.discard:Discard", "drop what arrives, on purpose (counted)"),
)


@dataclass
class ComponentEntry:
    """One registered component: its id, kind, class (imported lazily) and a one-line description."""

    id: str
    kind: Kind
    target: Target
    description: str = ""
    origin: str = "mdp"
    _cls: type[Operator] | None = field(default=None, repr=False)
    _error: str | None = field(default=None, repr=False)

    @property
    def target_name(self) -> str:
        """``"module:Class"`` of the component (without importing it)."""
        t = self.target
        return t if isinstance(t, str) else f"{t.__module__}:{t.__qualname__}"

    def load(self) -> type[Operator]:
        """Import and return the component class.

        Raises:
            ConfigError: its module cannot be imported or does not define an operator class.
        """
        if self._cls is not None:
            return self._cls
        if self._error is None:
            try:
                self._cls = _import_class(self.target)
                return self._cls
            except Exception as exc:  # any import-time failure makes only this entry unusable
                self._error = f"{type(exc).__name__}: {exc}"
        raise ConfigError(
            f"component {self.id!r} ({self.origin}) cannot be loaded from {self.target_name}: {self._error}"
        )

    @property
    def params_model(self) -> type[BaseModel] | None:
        """The component's ``Params`` model (None: it takes no params). Imports the class."""
        return self.load().Params

    @property
    def available(self) -> bool:
        """True if the class imports cleanly."""
        try:
            self.load()
        except ConfigError:
            return False
        return True

    @property
    def error(self) -> str | None:
        """Why the class cannot be loaded, once ``load`` has failed."""
        return self._error

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description: id, kind, description, where it comes from, and each param."""
        info: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "target": self.target_name,
            "origin": self.origin,
            "available": self.available,
            "error": self.error,
            "params": {},
        }
        model = self.params_model if info["available"] else None
        for name, f in (model.model_fields if model is not None else {}).items():
            default = None if f.is_required() else f.get_default(call_default_factory=True)
            type_name = _type_name(f.annotation)
            if any(_is_duration(m) for m in f.metadata):
                type_name = type_name.replace("int", "duration", 1)
            if "duration" in type_name and isinstance(default, int):
                default = format_duration(default)
            info["params"][f.alias or name] = {
                "type": type_name,
                "required": f.is_required(),
                "default": json.loads(json.dumps(default, default=str)),
                "description": f.description or "",
            }
        return info


def _is_duration(metadata: Any) -> bool:
    """True for the validator of :data:`mdp.durations.DurationNs`."""
    return getattr(getattr(metadata, "func", None), "__name__", "") == "_duration_validator"


def _type_name(tp: Any) -> str:
    """A short readable type: ``duration | None``, ``'drop' | 'revise'``, ``dict[str, str]``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return "duration" if any(_is_duration(m) for m in args[1:]) else _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    if tp is type(None):
        return "None"
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _import_class(target: Target) -> type[Operator]:
    if not isinstance(target, str):
        cls: Any = target
    else:
        module_name, sep, attr = target.partition(":")
        if not sep:
            raise ConfigError(f"a component target is 'package.module:Class', got {target!r}")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        cls = obj
    if is_seed_target(cls):
        return adapt(cls)
    if not (isinstance(cls, type) and issubclass(cls, Operator)):
        raise TypeError(
            f"{target!r} is not an mdp Operator, Source or Sink class, a seed-style 'async def fn(inputs, "
            "outputs)' or a provider class"
        )
    return cls


def kind_of_class(cls: type[Operator]) -> Kind:
    """``source``, ``sink`` or ``operator`` from the class hierarchy."""
    if cls.is_source:
        return "source"
    if issubclass(cls, Sink):
        return "sink"
    return "operator"


class ComponentRegistry:
    """String ids → components. ``default_registry()`` holds the built-ins and the installed plugins."""

    def __init__(self) -> None:
        self._entries: dict[str, ComponentEntry] = {}
        #: entry points that failed to load, name → reason (shown by ``mdp components``)
        self.plugin_errors: dict[str, str] = {}
        #: the origin given to what is registered without one (the plugin whose register() runs)
        self._origin = "mdp"

    def register(
        self,
        component_id: str,
        target: Target,
        *,
        kind: Kind | None = None,
        description: str | None = None,
        origin: str | None = None,
        replace: bool = False,
    ) -> ComponentEntry:
        """Register ``target``: a component class, a lazy ``"module:Class"`` string (which then needs
        ``kind``), or a seed-style channel function or provider class (:mod:`mdp.config.seed_nodes`).

        Raises:
            ConfigError: the id is taken (by the origin named) or not a word.
            TypeError: ``target`` is none of those.
        """
        origin = origin or self._origin
        if not component_id or any(c.isspace() for c in component_id):
            raise ConfigError(f"a component id is a non-empty word like 'operator.bars', got {component_id!r}")
        if component_id in self._entries and not replace:
            raise ConfigError(
                f"component id {component_id!r} is already registered by {self._entries[component_id].origin}; "
                "pick another id or pass replace=True"
            )
        if isinstance(target, str):
            if kind is None:
                raise ConfigError(f"registering {component_id!r} lazily as {target!r} needs kind=source|operator|sink")
        else:
            cls = _import_class(target)  # reject non-operators now
            kind = kind or kind_of_class(cls)
            if description is None:
                description = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        entry = ComponentEntry(component_id, kind, target, description or "", origin)
        if not isinstance(target, str):
            entry._cls = cls
        self._entries[component_id] = entry
        return entry

    def register_class(
        self, cls: type[Operator], *, origin: str | None = None, replace: bool = False
    ) -> ComponentEntry:
        """Register a class under its ``component_id`` attribute."""
        component_id = getattr(cls, "component_id", None)
        if not isinstance(component_id, str):
            raise ConfigError(f"{cls.__qualname__} has no component_id; set component_id = 'operator.name'")
        return self.register(component_id, cls, origin=origin, replace=replace)

    # the seed's spellings
    def register_source(self, component_id: str, target: Target, **kw: Any) -> ComponentEntry:
        return self.register(component_id, target, kind="source", **kw)

    register_provider = register_source

    def register_operator(self, component_id: str, target: Target, **kw: Any) -> ComponentEntry:
        return self.register(component_id, target, kind="operator", **kw)

    def register_sink(self, component_id: str, target: Target, **kw: Any) -> ComponentEntry:
        return self.register(component_id, target, kind="sink", **kw)

    def get(self, component_id: str) -> ComponentEntry:
        """The entry for ``component_id``.

        Raises:
            ConfigError: no such id; the message lists the closest registered ids.
        """
        try:
            return self._entries[component_id]
        except KeyError:
            close = difflib.get_close_matches(component_id, list(self._entries), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"unknown component type {component_id!r}{hint} (run 'mdp components' to list them all)"
            ) from None

    def __contains__(self, component_id: object) -> bool:
        return component_id in self._entries

    def __iter__(self) -> Iterator[ComponentEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.id))

    def __len__(self) -> int:
        return len(self._entries)

    def ids(self) -> list[str]:
        return sorted(self._entries)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register the components of every installed plugin; a broken plugin is recorded, not raised."""
        for ep in importlib.metadata.entry_points(group=group):
            origin = f"plugin {ep.value}" + (f" ({ep.dist.name})" if ep.dist is not None else "")
            try:
                obj = ep.load()
                if isinstance(obj, type) and issubclass(obj, Operator):
                    self.register_class(obj, origin=origin)
                elif callable(obj):
                    self._origin = origin  # what register() adds is the plugin's, not mdp's
                    try:
                        obj(self)
                    finally:
                        self._origin = "mdp"
                else:
                    raise TypeError("expected a component class with component_id or a callable(registry)")
            except Exception as exc:  # one broken plugin must not break every job
                self.plugin_errors[ep.name] = f"{origin}: {type(exc).__name__}: {exc}"


def builtin_registry() -> ComponentRegistry:
    """A registry holding only mdp's own components (no plugins)."""
    registry = ComponentRegistry()
    for component_id, kind, target, description in BUILTINS:
        registry.register(component_id, target, kind=kind, description=description)
    return registry


_default: ComponentRegistry | None = None
_lock = threading.Lock()


def default_registry() -> ComponentRegistry:
    """The process-wide registry: built-ins plus the ``mdp.components`` entry points (loaded once)."""
    global _default
    with _lock:
        if _default is None:
            registry = builtin_registry()
            registry.load_entry_points()
            _default = registry
        return _default


def reset_default_registry() -> None:
    """Forget the process-wide registry so the next call reloads plugins (tests, after installs)."""
    global _default
    with _lock:
        _default = None
