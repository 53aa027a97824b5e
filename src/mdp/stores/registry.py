"""Backend names to ``Store`` classes, imported on first use so a job pays only for its own driver."""

from __future__ import annotations

import importlib
from typing import Any, Final

from mdp.errors import ConfigError
from mdp.stores.base import Store

#: backend name -> "module:class" of its Store
BACKENDS: Final[dict[str, str]] = {
    "sqlite": "mdp.stores.sqlite:SqliteStore",
    "duckdb": "mdp.stores.duckdb:DuckdbStore",
    "postgres": "mdp.stores.postgres:PostgresStore",
    "parquet": "mdp.stores.parquet:ParquetStore",
    "arcticdb": "mdp.stores.arcticdb:ArcticStore",
}


def store_class(backend: str) -> type[Store]:
    """Return the ``Store`` class of ``backend`` (importing its driver only now).

    Raises:
        ConfigError: ``backend`` is not one of ``BACKENDS``.
    """
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ConfigError(f"unknown store {backend!r}; expected one of {sorted(BACKENDS)}") from None
    module, name = target.split(":")
    cls: type[Store] = getattr(importlib.import_module(module), name)
    return cls


def open_store(backend: str, **params: Any) -> Store:
    """Build a store of ``backend`` from keyword arguments (what ``Store.spec()`` returns); not yet opened."""
    return store_class(backend)(**params)
