"""``ArcticStore``: records in an ArcticDB library (a local LMDB folder, or S3), one ArcticDB symbol per table.

Layout: the library (default ``mdp``) holds one ArcticDB *symbol* per table (``bars_1m``, ``trades``...),
every instrument in it, indexed by the kind's event time (``start`` for bars and quote bars, ``ts_event``
for trades and quotes) as a ``datetime64[ns]`` index, rows sorted by that time and then by key. The
canonical columns are kept as they are (``start``, ``symbol``... stay plain columns beside the index), so
``lib.read("bars_1m", output_format="polars")`` in a notebook gives the bars back. ArcticDB keeps no null
in an integer column, so ``ts_recv`` (trades, quotes; null where a feed gives no receive time) is written
with 0 in place of null and a boolean column ``ts_recv__null`` beside it, which :class:`ArcticStore` reads
back as null (a null in another integer column is refused).

Writes: a batch is merged with the stored rows of its time range by the key rule of
:mod:`mdp.stores.base` (stored rows come first, so among equal revisions the first written stays; a
higher revision replaces) and written back with one ``Library.update`` over that range. One batch is one
new ArcticDB version of the table's symbol, so a reader in another process sees a batch whole or not at
all, and re-writing a range never doubles a row. One writer per table at a time (ArcticDB does not lock
a symbol against a second writer); any number of readers, in any process. Old versions are pruned at
each write unless ``keep_versions`` is set.

Example::

    >>> import tempfile
    >>> from mdp.stores.samples import sample_bars
    >>> with ArcticStore("lmdb://" + tempfile.mkdtemp(), tables={"bar": "bars_1m"}) as store:
    ...     store.write("bar", sample_bars(4))
    ...     store.read("bar").height
    4
    4
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import polars as pl

from mdp.errors import ConfigError, PermanentStoreError, StoreError, TransientStoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.stores.base import KEYS, TIME_COLUMN, ReadFilter, Store, dedupe

if TYPE_CHECKING:
    import pandas as pd

#: the library a store uses when none is named
DEFAULT_LIBRARY: Final = "mdp"
#: the suffix of the boolean column that marks the nulls of an Int64 column
NULL_SUFFIX: Final = "__null"
#: the Int64 columns that may hold nulls: each is kept beside its ``__null`` flag column, always
NULLABLE_INTS: Final = ("ts_recv",)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_URI = re.compile(r"^(lmdb|s3s?|azure|mem)://", re.IGNORECASE)
#: one ``arcticdb.Arctic`` per URI in a process: LMDB does not support opening one folder twice in a process
#: (a job reading with source.arcticdb and writing with sink.arcticdb shares the instance)
_ARCTICS: dict[str, Any] = {}
_ARCTICS_LOCK = threading.Lock()


def arctic(uri: str) -> Any:
    """The process's ``arcticdb.Arctic`` over ``uri`` (made on first use; ArcticDB logs warnings only)."""
    with _ARCTICS_LOCK:
        found = _ARCTICS.get(uri)
        if found is None:
            import arcticdb
            from arcticdb.config import set_log_level

            set_log_level("WARN")  # its INFO lines ("Column ... does not have non null elements") are noise
            found = _ARCTICS[uri] = arcticdb.Arctic(uri)
        return found


def check_uri(uri: str) -> str:
    """Return ``uri`` if ArcticDB knows its scheme (``lmdb://FOLDER``, ``s3://...``, ``azure://...``, ``mem://``)."""
    if not _URI.match(uri):
        raise ConfigError(
            f"an ArcticDB URI starts with lmdb://, s3://, s3s://, azure:// or mem://, got {uri!r} "
            "(a local folder: lmdb:///absolute/folder or lmdb://relative/folder)"
        )
    return uri


def lmdb_folder(uri: str) -> Path | None:
    """The local folder of an ``lmdb://`` URI (options after ``?`` dropped); None for another storage."""
    if not uri.lower().startswith("lmdb://"):
        return None
    return Path(uri[len("lmdb://") :].split("?", 1)[0])


def split_target(target: str) -> tuple[str, str]:
    """``URI`` or ``URI#LIBRARY`` (what ``arcticdb:...`` store specs hold) as ``(uri, library)``."""
    uri, _, library = target.partition("#")
    return check_uri(uri.strip()), library.strip() or DEFAULT_LIBRARY


def list_tables(store: ArcticStore) -> list[str]:
    """The ArcticDB symbols (tables) of the store's library, sorted; none when the library does not exist."""
    instance = arctic(store.uri)
    if not instance.has_library(store.library):
        return []
    return sorted(str(s) for s in instance.get_library(store.library).list_symbols())


class ArcticStore(Store):
    """Records in an ArcticDB library, one ArcticDB symbol per table (see the module docstring).

    Args:
        uri: the ArcticDB URI: ``lmdb://FOLDER`` for a local store (no server), or ``s3://...``.
        library: the library inside it (created on open unless read-only).
        tables: ArcticDB symbol per record kind (default ``bars``, ``trades``, ``quotes``, ``quote_bars``).
        read_only: never create or change anything (readers in other processes).
        keep_versions: keep every older version of a table (ArcticDB's time travel); default: prune them.
    """

    backend: ClassVar[str] = "arcticdb"

    def __init__(
        self,
        uri: str,
        *,
        library: str = DEFAULT_LIBRARY,
        tables: Mapping[str, str] | None = None,
        read_only: bool = False,
        keep_versions: bool = False,
    ) -> None:
        super().__init__(tables=tables, read_only=read_only)
        self.uri = check_uri(uri)
        self.library = self.check_table(library)
        self.keep_versions = keep_versions
        self._lib: Any = None

    @classmethod
    def check_table(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ConfigError(f"an ArcticDB library or symbol name is letters, digits, _ . - (got {name!r})")
        return name

    @property
    def location(self) -> str:
        return f"arcticdb:{self.uri} library {self.library} table {', '.join(self.tables.values())}"

    def spec(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "library": self.library,
            "tables": dict(self.tables),
            "keep_versions": self.keep_versions,
        }

    # -- backend ------------------------------------------------------------------------------------

    def _open(self) -> None:
        instance = arctic(self.uri)
        if self.read_only:
            self._lib = instance.get_library(self.library) if instance.has_library(self.library) else None
        else:
            self._lib = instance.get_library(self.library, create_if_missing=True)

    def _write(self, kind: RecordKind, frame: pl.DataFrame) -> None:
        symbol, time = self.tables[kind], TIME_COLUMN[kind]
        lo, hi = frame.get_column(time).min(), frame.get_column(time).max()
        assert isinstance(lo, int)
        assert isinstance(hi, int)
        span = (_timestamp(lo), _timestamp(hi))
        if self._lib.has_symbol(symbol):
            stored = self._lib.read(symbol, date_range=span, output_format="polars").data
            frame = dedupe(pl.concat([_decode(stored, kind), frame], how="vertical"), kind)
        merged = frame.sort([time, *KEYS[kind]])
        data = _encode(merged, time)
        self._staged()
        self._lib.update(symbol, data, upsert=True, date_range=span, prune_previous_versions=not self.keep_versions)

    def _read(self, where: ReadFilter) -> pl.DataFrame:
        import arcticdb

        symbol = self.tables[where.kind]
        if self._lib is None or not self._lib.has_symbol(symbol):
            return pl.DataFrame(schema=SCHEMAS[where.kind])
        query = arcticdb.QueryBuilder()
        if where.symbol is not None:
            query = query[query["symbol"] == where.symbol]
        if where.timeframe is not None:
            query = query[query["timeframe"] == where.timeframe]
        span = None
        if where.start is not None or where.end is not None:
            span = (
                None if where.start is None else _timestamp(where.start),
                None if where.end is None else _timestamp(where.end - 1),  # ArcticDB's range is closed
            )
        read = self._lib.read(symbol, date_range=span, query_builder=query, output_format="polars")
        return _decode(read.data, where.kind)

    def _close(self) -> None:
        self._lib = None  # the Arctic instance stays for the process (see ``arctic``)

    def _translate(self, exc: Exception, step: str) -> StoreError | None:
        import arcticdb.exceptions as adb_errors

        message = f"arcticdb {step} at {self.location} failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, adb_errors.StorageException | OSError):
            return TransientStoreError(message)
        if isinstance(exc, adb_errors.ArcticException | pl.exceptions.PolarsError | ValueError | TypeError):
            return PermanentStoreError(message)
        return None


def _timestamp(ns: int) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(ns, unit="ns")


def _encode(frame: pl.DataFrame, time: str) -> pd.DataFrame:
    """The pandas frame ArcticDB keeps: indexed by ``time``, Int64 nulls as 0 plus a ``__null`` flag column."""
    import pandas as pd

    nullable = [n for n in NULLABLE_INTS if n in frame.columns]
    other = [n for n, t in frame.schema.items() if t == pl.Int64 and n not in nullable and frame[n].null_count()]
    if other:
        raise PermanentStoreError(f"ArcticDB cannot keep nulls in the integer columns {other}; fill them first")
    flags = [pl.col(n).is_null().alias(n + NULL_SUFFIX) for n in nullable]
    data = frame.with_columns(*flags).with_columns(pl.col(nullable).fill_null(0)).to_pandas()
    data.index = pd.DatetimeIndex(frame.get_column(time).to_numpy().astype("datetime64[ns]"), name=None)
    return data


def _decode(data: pl.DataFrame, kind: RecordKind) -> pl.DataFrame:
    """Canonical columns back from what ArcticDB returned: flagged Int64 values null again, NaN as null."""
    schema = SCHEMAS[kind]
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name not in data.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
            continue
        col = pl.col(name)
        flag = name + NULL_SUFFIX
        if flag in data.columns:
            col = pl.when(pl.col(flag).fill_null(False)).then(None).otherwise(col)
        if dtype == pl.Float64:
            col = col.fill_nan(None)
        exprs.append(col.cast(dtype).alias(name))
    return data.select(exprs)
