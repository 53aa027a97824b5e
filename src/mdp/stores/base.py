"""The ``Store`` contract every backend fulfils, and the batch rules they all share.

A store keeps four kinds of record, each in its own table, under a key::

    trade      (symbol, ts_event, seq)
    quote      (symbol, ts_event, seq)
    bar        (symbol, timeframe, start)      a final bar replaces a provisional one, then higher ``revision``
    quote_bar  (symbol, timeframe, start)      the same rule (``operator.quote_bars``' output)

Writes are idempotent: writing a batch twice leaves one row per key, so a batch that failed half-way
(or a replayed range) can simply be written again. The rule for conflicting rows is the same inside a
batch and across batches, so the result never depends on where a stream was cut into batches:

- trades and quotes: the first row written under a key stays;
- bars and quote bars: a bar whose ``quality`` is ``provisional`` (emitted because the input ended or the
  job stopped before a watermark closed it, see :mod:`mdp.operators.bars.quality`) is a placeholder:
  any bar of its key written later replaces it, final or provisional, whatever their revisions, and a
  provisional bar never replaces a final one. Among final bars the highest ``revision`` wins, and among
  equal revisions the first one written stays.

So of all the rows ever written under a key, the store keeps the first final row of the highest
revision, or, if none was final, the last provisional row. Duplicates inside one batch are resolved
here, in polars, before a backend sees the batch, so every backend resolves them alike.

Stores are synchronous (their drivers are); :class:`~mdp.stores.sink.StoreSink` runs them in a worker
thread. Driver errors are translated at the boundary into :class:`~mdp.errors.TransientStoreError`
(a retry may help) or :class:`~mdp.errors.PermanentStoreError` (it will not), so a retry wrapper can
decide without knowing the driver.
"""

from __future__ import annotations

import copy
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Final, Literal, Self, get_args

import polars as pl

from mdp.errors import ConfigError, MdpError, PermanentStoreError, StoreError
from mdp.records import PROVISIONAL, SCHEMAS, RecordKind, conform, empty_frame
from mdp.runtime.checkpoints import Checkpoint

KINDS: Final[tuple[RecordKind, ...]] = get_args(RecordKind)
KEYS: Final[dict[RecordKind, tuple[str, ...]]] = {
    "trade": ("symbol", "ts_event", "seq"),
    "quote": ("symbol", "ts_event", "seq"),
    "bar": ("symbol", "timeframe", "start"),
    "quote_bar": ("symbol", "timeframe", "start"),
}
#: the column whose larger value replaces a stored row with the same key
VERSION: Final[dict[RecordKind, str | None]] = {
    "trade": None,
    "quote": None,
    "bar": "revision",
    "quote_bar": "revision",
}
#: the column that says whether a row of a versioned kind is provisional
FLAG: Final = "quality"
#: the event-time column the ``start``/``end`` read filters apply to
TIME_COLUMN: Final[dict[RecordKind, str]] = {
    "trade": "ts_event",
    "quote": "ts_event",
    "bar": "start",
    "quote_bar": "start",
}
DEFAULT_TABLES: Final[dict[RecordKind, str]] = {
    "trade": "trades",
    "quote": "quotes",
    "bar": "bars",
    "quote_bar": "quote_bars",
}
#: columns a record default fills when a frame leaves them null (they are part of a key or the version)
_FILL_DEFAULTS: Final[dict[str, int]] = {"seq": 0, "revision": 0}
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def check_kind(kind: str) -> RecordKind:
    """Return ``kind`` as a record kind, or raise a ``PermanentStoreError`` naming the valid ones."""
    for known in KINDS:
        if kind == known:
            return known
    raise PermanentStoreError(f"a store keeps the kinds {list(KINDS)}, got {kind!r}")


def check_table(name: str) -> str:
    """Return ``name`` if it is a plain (optionally schema-qualified) SQL identifier."""
    if not TABLE_NAME.match(name):
        raise ConfigError(f"a table name must look like 'bars' or 'schema.bars' (letters, digits, _), got {name!r}")
    return name


def quote_ident(name: str) -> str:
    """Quote a checked table name for SQL: ``md.bars`` -> ``"md"."bars"`` (``start``/``end`` are keywords)."""
    return ".".join(f'"{part}"' for part in check_table(name).split("."))


def prepare(frame: pl.DataFrame, kind: RecordKind) -> pl.DataFrame:
    """Conform ``frame`` to the canonical schema, fill defaulted key columns, and dedupe it by key.

    Raises:
        PermanentStoreError: a column is missing or cannot be cast, or a key column holds nulls.
    """
    try:
        out = conform(frame, kind)
    except MdpError as exc:
        advice = _kind_advice(frame, kind, exc)
        raise PermanentStoreError(f"cannot write this frame as {kind} records: {advice}") from exc
    except pl.exceptions.PolarsError as exc:
        raise PermanentStoreError(f"cannot write this {kind} frame: {exc}") from exc
    fills = [pl.col(c).fill_null(v) for c, v in _FILL_DEFAULTS.items() if c in out.columns]
    out = out.with_columns(fills)
    keys = KEYS[kind]
    null_keys = [k for k, n in zip(keys, out.select(pl.col(keys).null_count()).row(0), strict=True) if n]
    if null_keys:
        raise PermanentStoreError(f"a {kind} key column may not be null; found nulls in {null_keys}")
    return dedupe(out, kind)


def _kind_advice(frame: pl.DataFrame, kind: RecordKind, error: MdpError) -> str:
    """Why a frame is not of ``kind``, and the kind it holds if it fits another (a sink given the wrong kind)."""
    fits = [k for k in KINDS if k != kind and set(SCHEMAS[k]) <= set(frame.columns)]
    if fits:
        lacks = [c for c in SCHEMAS[kind] if c not in frame.columns]
        return f"it lacks the columns {lacks} and holds {fits[0]} records: set the sink's params.kind to {fits[0]}"
    return str(error)


def dedupe(frame: pl.DataFrame, kind: RecordKind) -> pl.DataFrame:
    """Keep one row per key, in write order by the store's rule: the first final row of the highest
    version, or the last provisional row of a key that has no final one (trades, quotes: the first row)."""
    keys = list(KEYS[kind])
    if frame.height < 2:
        return frame
    # equal keys hash alike, so as many distinct hashes as rows proves there is no duplicate (fast path)
    if frame.select(pl.struct(keys).hash().n_unique()).item() == frame.height:
        return frame
    version = VERSION[kind]
    if version is not None:
        # final rows first, by version (a stable sort keeps the first of equals first); then provisional
        # rows, the last written first
        final = ~is_provisional(frame)
        order = [
            final.alias("__final"),
            pl.when(final).then(pl.col(version)).otherwise(0).alias("__version"),
            pl.when(final).then(0).otherwise(pl.int_range(pl.len(), dtype=pl.Int64)).alias("__later"),
        ]
        frame = frame.sort(order, descending=True, maintain_order=True)
    return frame.unique(subset=keys, keep="first", maintain_order=True)


def is_provisional(frame: pl.DataFrame) -> pl.Expr:
    """True for the rows of ``frame`` that are provisional bars (False where it has no ``quality``)."""
    if FLAG not in frame.columns:
        return pl.lit(False)
    return pl.col(FLAG).fill_null("").eq(PROVISIONAL)


def finish_read(frame: pl.DataFrame, kind: RecordKind) -> pl.DataFrame:
    """Cast what a backend read back to the canonical schema, ordered by key."""
    return conform(frame, kind).sort(list(KEYS[kind]))


@dataclass(frozen=True, slots=True)
class ReadFilter:
    """What ``Store.read`` selects: ``start <= time < end`` on the kind's time column, and exact matches."""

    kind: RecordKind
    symbol: str | None = None
    timeframe: str | None = None
    start: int | None = None
    end: int | None = None

    def sql(self, placeholder: str = "?") -> tuple[str, list[Any]]:
        """Return a ``WHERE`` clause (or ``""``) and its parameters."""
        time = f'"{TIME_COLUMN[self.kind]}"'
        terms: list[tuple[str, Any]] = []
        if self.symbol is not None:
            terms.append(('"symbol" = ' + placeholder, self.symbol))
        if self.timeframe is not None:
            terms.append(('"timeframe" = ' + placeholder, self.timeframe))
        if self.start is not None:
            terms.append((f"{time} >= {placeholder}", self.start))
        if self.end is not None:
            terms.append((f"{time} < {placeholder}", self.end))
        if not terms:
            return "", []
        return " WHERE " + " AND ".join(t for t, _ in terms), [v for _, v in terms]

    def expr(self) -> pl.Expr:
        """The same selection as a polars predicate."""
        time = pl.col(TIME_COLUMN[self.kind])
        pred = pl.lit(True)
        if self.symbol is not None:
            pred &= pl.col("symbol") == self.symbol
        if self.timeframe is not None:
            pred &= pl.col("timeframe") == self.timeframe
        if self.start is not None:
            pred &= time >= self.start
        if self.end is not None:
            pred &= time < self.end
        return pred


class Store(ABC):
    """A place records are kept by key. Open it (or use ``with``), ``write`` batches, ``read`` ranges.

    Args:
        tables: table name per kind (defaults ``bars``, ``trades``, ``quotes``, ``quote_bars``). ``open()`` creates the
            tables named here that are missing; a store built with ``{"bar": "bars_1m"}`` touches no other.
        read_only: never create or change anything (readers in other processes).

    Attributes:
        on_write_staged: called inside ``write`` once the batch is staged and before it is committed;
            tests use it to look at the store from another process while a write is under way.
    """

    #: the name ``open_store`` knows this backend by
    backend: ClassVar[str]

    def __init__(self, *, tables: Mapping[str, str] | None = None, read_only: bool = False) -> None:
        chosen = dict(DEFAULT_TABLES) if tables is None else dict(tables)
        self.tables: dict[RecordKind, str] = {check_kind(k): self.check_table(v) for k, v in chosen.items()}
        self.read_only = read_only
        self.on_write_staged: Callable[[], None] | None = None
        self._opened = False
        # one write or read at a time: the sink calls from worker threads, drivers are not thread-safe
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """A copy with its own lock (a graph that runs again starts from a copy of the store it was built with)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
        clone.__dict__.update(copy.deepcopy(state, memo), _lock=threading.Lock())
        return clone

    @classmethod
    def check_table(cls, name: str) -> str:
        """Return ``name`` if this backend accepts it as a table name (SQL identifiers by default)."""
        return check_table(name)

    # -- the contract -------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, and create the tables of ``tables`` that are missing (unless read-only)."""
        if self._opened:
            return
        with self._lock, self._translated("open"):
            self._open()
        self._opened = True

    def write(self, kind: str, frame: pl.DataFrame, checkpoint: Checkpoint | None = None) -> int:
        """Upsert ``frame`` (rows of ``kind``) by key in one transaction; return the rows sent after dedupe.
        With ``checkpoint``, the same transaction records it as its job's last checkpoint (``frame`` may
        then be empty): the rows and the checkpoint are committed together or not at all.

        Raises:
            TransientStoreError: the backend is unreachable for now; writing the batch again is safe.
            PermanentStoreError: the data, schema or credentials are wrong.
        """
        k = self._writable(kind, "write")
        if frame.height == 0 and checkpoint is None:
            return 0
        batch = prepare(frame, k) if frame.height else empty_frame(k)
        step = f"write {batch.height} {k} rows" + ("" if checkpoint is None else f" and checkpoint {checkpoint.epoch}")
        with self._lock, self._translated(step):
            if checkpoint is None:
                self._write(k, batch)
            else:
                self._write_checkpoint(k, batch, checkpoint)
        return batch.height

    # -- checkpoints ----------------------------------------------------------------------------------

    #: whether this backend keeps checkpoints beside its data
    keeps_checkpoints: ClassVar[bool] = False

    def hold_for_checkpoints(self, job: str) -> None:
        """Rows written from now on belong to checkpointed epochs of ``job`` (a store that cannot hide
        the rows of an uncommitted epoch, as SQL stores cannot, ignores this: a resumed run writes the same
        rows again, which leaves them as they are)."""
        return None

    def load_checkpoint(self, job: str) -> Checkpoint | None:
        """The last checkpoint committed for ``job`` (None: there is none)."""
        self._check_open()
        if not self.keeps_checkpoints:
            return None
        with self._lock, self._translated(f"read the checkpoint of {job!r}"):
            return self._load_checkpoint(job)

    def drop_checkpoint(self, job: str) -> None:
        """Forget ``job``'s checkpoints (``mdp run --fresh``); the rows stay."""
        self._check_open()
        if not self.keeps_checkpoints:
            return
        with self._lock, self._translated(f"drop the checkpoint of {job!r}"):
            self._drop_checkpoint(job)

    def _write_checkpoint(self, kind: RecordKind, frame: pl.DataFrame, checkpoint: Checkpoint) -> None:
        """Upsert ``frame`` (possibly empty) and record ``checkpoint`` in one transaction."""
        raise PermanentStoreError(f"{self.location} cannot keep checkpoints; set checkpoint: false in the job")

    def _load_checkpoint(self, job: str) -> Checkpoint | None:
        return None

    def _drop_checkpoint(self, job: str) -> None:
        return None

    def read(
        self,
        kind: str,
        symbol: str | None = None,
        timeframe: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> pl.DataFrame:
        """Return the stored rows of ``kind`` with ``start <= time < end`` in the canonical schema, by key.

        The time is ``ts_event`` for trades and quotes, ``start`` for bars and quote bars; None leaves a side
        open.
        """
        k = check_kind(kind)
        self._check_open()
        if k not in self.tables:
            return empty_frame(k)
        where = ReadFilter(k, symbol, timeframe, start, end)
        with self._lock, self._translated(f"read {k} rows"):
            frame = self._read(where)
        return finish_read(frame, k)

    def close(self) -> None:
        """Release the connection (idempotent)."""
        if not self._opened:
            return
        with self._lock, self._translated("close"):
            self._close()
        self._opened = False

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data lives, for people: a path or a DSN without its password."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this store with ``open_store(backend, **spec)`` (another process)."""

    # -- what a backend implements ------------------------------------------------------------------

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _write(self, kind: RecordKind, frame: pl.DataFrame) -> None:
        """Upsert a canonical, deduplicated, non-empty batch in one transaction."""

    @abstractmethod
    def _read(self, where: ReadFilter) -> pl.DataFrame: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _translate(self, exc: Exception, step: str) -> StoreError | None:
        """Map a driver error to a store error (None: not a driver error, let it through)."""

    # -- shared plumbing ----------------------------------------------------------------------------

    def _writable(self, kind: str, action: str) -> RecordKind:
        """``kind``, checked, on an open store that may ``action`` its table of that kind."""
        k = check_kind(kind)
        self._check_open()
        if self.read_only:
            raise PermanentStoreError(f"{self.location} was opened read-only; it cannot {action}")
        if k not in self.tables:
            raise PermanentStoreError(f"this store has no table for {k!r}; it has {sorted(self.tables)}")
        return k

    def _staged(self) -> None:
        if self.on_write_staged is not None:
            self.on_write_staged()

    def _check_open(self) -> None:
        if not self._opened:
            raise PermanentStoreError(f"the store at {self.location} is not open; call open() or use 'with'")

    def _translated(self, step: str) -> _Translate:
        return _Translate(self, step)

    def columns(self, kind: RecordKind) -> list[str]:
        """The canonical columns of ``kind``, in order."""
        return list(SCHEMAS[kind])

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


class _Translate:
    """Context manager that re-raises driver errors as store errors naming the store and the step."""

    __slots__ = ("step", "store")

    def __init__(self, store: Store, step: str) -> None:
        self.store, self.step = store, step

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        if exc is None or isinstance(exc, StoreError) or not isinstance(exc, Exception):
            return False
        error = self.store._translate(exc, self.step)
        if error is None:
            return False
        raise error from exc
