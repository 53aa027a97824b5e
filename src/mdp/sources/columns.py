"""Map a file's columns onto a canonical record schema, vectorised, with errors that say what to change.

A mapping sends each canonical column name to a file column (``"price": "px"``) or to a *template* that
joins file columns (``"symbol": "{venue}:{symbol}"`` gives ``"binance-spot:BTCUSDT"``). A canonical column
that is not mapped comes from the file column of the same name if there is one, else it is null; ``seq``
without a source is the row's arrival index in the whole file, so ties in ``ts_event`` keep file order.

Timestamp columns (``ts_event``, ``ts_recv``) become int ns UTC from integers or decimals in a unit
(``ns``, ``us``, ``ms``, ``s``), from ISO-8601 text (``iso``) or from a native datetime column.
A value that cannot be read becomes null and marks its row (``bad_timestamp``, ``bad_number``) for the
dead letters; ``ts_fallback`` fills an empty ``ts_event`` from another column, in that column's unit.
Everything here is pure (frames in, frames out); the file I/O lives in :mod:`mdp.sources.replay`.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import polars as pl

from mdp.errors import ConfigError, MdpError, SourceError
from mdp.records import SCHEMAS, Quote, RecordKind, Trade, conform

if TYPE_CHECKING:
    import pyarrow as pa

TsUnit = Literal["ns", "us", "ms", "s", "iso"]
TS_UNITS: Final[tuple[str, ...]] = get_args(TsUnit)
UNIT_NS: Final[dict[str, int]] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
#: canonical columns that hold timestamps, converted to int ns UTC
TIME_COLUMNS: Final[frozenset[str]] = frozenset({"ts_event", "ts_recv"})
_RECORD_CLASSES: Final[dict[RecordKind, type[Any]]] = {"trade": Trade, "quote": Quote}
#: how many more timestamp formats one block of ISO-8601 text may mix (each costs one pass over the rest)
_ISO_RETRIES: Final[int] = 3
#: prefix of scratch columns: the file had a value for this canonical column
_HAS: Final = "__mdp_has_"
#: what the CSV reader puts where bytes were not UTF-8 (:mod:`mdp.sources.textfile`)
_REPLACEMENT: Final = "\ufffd"
_INT64_MAX: Final = 2**63 - 1


def required_columns(kind: RecordKind) -> frozenset[str]:
    """The canonical columns a record of ``kind`` cannot do without (its fields without a default)."""
    fields = dataclasses.fields(_RECORD_CLASSES[kind])
    return frozenset(f.name for f in fields if f.default is dataclasses.MISSING)


def parse_template(template: str) -> list[tuple[str, str | None]]:
    """Split ``"{venue}:{symbol}"`` into ``[("", "venue"), (":", "symbol")]`` (literal text, column)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(
            f"column template {template!r} is malformed ({exc}); write it as '{{col1}}:{{col2}}'"
        ) from exc
    result: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parts:
        if name is not None and (spec or conversion or name == ""):
            raise ConfigError(
                f"column template {template!r} may only name columns in braces, like '{{venue}}:{{symbol}}'; "
                "remove format specs, conversions and empty braces"
            )
        result.append((literal, name))
    return result


def is_template(value: str) -> bool:
    """True when a mapping value joins columns (it contains braces) rather than naming one column."""
    return "{" in value or "}" in value


@dataclass(frozen=True)
class ColumnSpec:
    """Where one canonical column comes from: a file column, a template, the row index, or nothing."""

    how: Literal["column", "template", "row_index", "null"]
    column: str | None = None
    template: str = ""
    parts: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def file_columns(self) -> list[str]:
        if self.how == "column":
            assert self.column is not None
            return [self.column]
        return [name for _, name in self.parts if name is not None]


class ColumnPlan:
    """How to turn frames of one file into canonical frames of ``kind``.

    Args:
        kind: the record kind to produce.
        mapping: canonical name -> file column or template.
        file_columns: the columns the file has, in file order.
        ts_units: unit of each timestamp column (``{"ts_event": "ms", "ts_recv": "ns"}``).
        where: how to name the file in messages (its path).

    Raises:
        ConfigError: the mapping names an unknown canonical column or a malformed template.
        SourceError: a mapped column is not in the file, or a required column has no source.
    """

    def __init__(
        self,
        kind: RecordKind,
        mapping: Mapping[str, str],
        file_columns: list[str],
        ts_units: Mapping[str, TsUnit],
        where: str,
        *,
        ts_fallback: str | None = None,
        ts_fallback_unit: TsUnit = "ns",
    ) -> None:
        self.kind = kind
        self.schema = SCHEMAS[kind]
        self.ts_units = dict(ts_units)
        self.where = where
        self.ts_fallback_unit = ts_fallback_unit
        unknown = sorted(set(mapping) - set(self.schema))
        if unknown:
            raise ConfigError(
                f"columns maps {unknown} but a {kind} has only the columns {list(self.schema)}; "
                "use those names as the keys of params.columns"
            )
        available = set(file_columns)
        self.specs: dict[str, ColumnSpec] = {
            name: _spec(mapping[name]) if name in mapping else self._default_spec(name, available)
            for name in self.schema
        }
        #: where ts_event comes from in rows whose own ts_event field is empty
        self.fallback = None if ts_fallback is None else _spec(ts_fallback)
        used = {**self.specs, **({"ts_fallback": self.fallback} if self.fallback else {})}
        for role, spec in used.items():
            for col in spec.file_columns:
                if col not in available:
                    raise SourceError(
                        f"column {col!r} (mapped to {role!r}) is not in {where}; the file has the columns "
                        f"{file_columns}. change params.columns (or params.ts_fallback) to name one of them"
                    )
        missing = sorted(n for n in required_columns(kind) if self.specs[n].how == "null")
        if missing:
            raise SourceError(
                f"a {kind} needs the columns {missing}, which {where} does not have (its columns are "
                f"{file_columns}); map them in params.columns, e.g. {{'{missing[0]}': '<file column>'}}"
            )
        #: the file columns to read, in file order (reading fewer columns is faster)
        self.needed = [c for c in file_columns if any(c in s.file_columns for s in used.values())]

    def _default_spec(self, name: str, available: set[str]) -> ColumnSpec:
        if name in available:
            return ColumnSpec("column", column=name)
        return ColumnSpec("row_index" if name == "seq" else "null")

    def arrow_types(self) -> dict[str, pa.DataType]:
        """Arrow types to request when parsing text (CSV): every column as text, parsed by :meth:`parse`,
        so a value that is not a number becomes one bad record, not a failed block, and keeps its text."""
        import pyarrow as pa  # only the CSV reader asks, and only it needs pyarrow

        return {col: pa.string() for col in self.needed}

    def parse(
        self, raw: pl.DataFrame, first_row: int, *, check_units: bool = False, check_text: bool = False
    ) -> Parsed:
        """Return ``raw`` (file columns) as a canonical frame, and what could not be read in each row.

        A value that cannot be read becomes null and its row gets a reason in ``problems`` and the file
        column at fault in ``columns`` (the first in this order): ``undecodable`` (text holding U+FFFD,
        which stands for bytes that were not UTF-8), ``bad_timestamp`` (not a time in its unit),
        ``implausible_ts_event`` (a ts_event too large for int64 ns in its unit, i.e. after 2262: usually
        a wrong ``ts_unit``), ``bad_number``. :mod:`mdp.sources.validation` turns those rows into dead
        letters.

        Args:
            first_row: the row index of ``raw``'s first row in the file (``seq`` when it is not mapped).
            check_units: raise when not one timestamp of a time column can be read: in the first block
                that is a wrong ``ts_unit`` or mapping, not bad data.
            check_text: look for U+FFFD in the text columns (the reader replaced bytes that were not UTF-8).

        Raises:
            SourceError: as ``check_units`` says, or a value does not fit its canonical type.
        """
        undecodable = self._undecodable(raw) if check_text else []
        plain = None if undecodable else self._plain_select(raw, first_row)
        if plain is not None:
            return Parsed(conform(pl.DataFrame(plain), self.kind), None)
        exprs: list[pl.Expr] = []
        numbers: list[tuple[str, str]] = []  # (canonical, file column or template)
        found: list[tuple[str, str, pl.Series]] = [("undecodable", col, mask) for col, mask in undecodable]
        for name, spec in self.specs.items():
            expr = _source_expr(spec, raw.height, first_row)
            if expr is None:
                continue
            if name in TIME_COLUMNS and spec.how != "row_index":
                times = self._time_column(raw, name, expr, check_units)
                found.append(("bad_timestamp", times.column, times.unread))
                if times.overflow is not None:
                    reason = "implausible_ts_event" if name == "ts_event" else "bad_timestamp"
                    found.append((reason, times.column, times.overflow))
                expr = pl.lit(times.ns)
            elif spec.how != "row_index" and self.schema[name] != pl.String:
                numbers.append((name, spec.column or spec.template))
                exprs.append(expr.is_not_null().alias(_HAS + name))  # to tell "no value" from "not a number"
                expr = expr.cast(self.schema[name], strict=False)
            exprs.append(expr.alias(name))
        try:
            selected = raw.select(exprs)
            frame = conform(selected, self.kind)
        except (pl.exceptions.PolarsError, MdpError) as exc:
            raise SourceError(
                f"cannot read {self.where} as {self.kind} records: {exc}. check that params.columns maps "
                "each canonical column to a file column of the right kind"
            ) from exc
        if numbers:  # one pass tells which numeric columns hold text that is not a number
            unread = [(pl.col(name).is_null() & pl.col(_HAS + name)).alias(name) for name, _ in numbers]
            masks = selected.select(unread)
            for (name, column), any_bad in zip(numbers, masks.select(pl.all().any()).row(0), strict=True):
                if any_bad:
                    found.append(("bad_number", column, masks.get_column(name)))
        found = [(reason, column, mask) for reason, column, mask in found if mask.any()]
        if not found:
            return Parsed(frame, None)
        problems = pl.select(_first(found, 0).alias("problem")).to_series()
        columns = pl.select(_first(found, 1).alias("column")).to_series()
        return Parsed(frame, problems, columns)

    def _undecodable(self, raw: pl.DataFrame) -> list[tuple[str, pl.Series]]:
        """``(file column, rows holding U+FFFD)`` for each text column of ``raw`` that has one."""
        result = []
        for col, dtype in raw.schema.items():
            if dtype == pl.String:
                mask = raw.get_column(col).str.contains(_REPLACEMENT, literal=True).fill_null(False)
                if mask.any():
                    result.append((col, mask))
        return result

    def _plain_select(self, raw: pl.DataFrame, first_row: int) -> list[pl.Series] | None:
        """The canonical columns of ``raw``, renamed but not cast (:func:`conform` casts them), when nothing
        in them can be unreadable: every mapped column is a plain file column without nulls (null counts
        are free), times are integers in ns, numbers are numbers and text is text. None otherwise (the
        general path checks each value)."""
        columns: list[pl.Series] = []
        for name, dtype in self.schema.items():
            spec = self.specs[name]
            if spec.how == "null":
                continue  # conform adds it
            if spec.how == "row_index":
                columns.append(pl.int_range(first_row, first_row + raw.height, dtype=pl.Int64, eager=True).alias(name))
                continue
            if spec.how != "column" or spec.column is None:
                return None
            column = raw.get_column(spec.column)
            have = column.dtype
            if column.null_count():
                return None
            if name in TIME_COLUMNS:
                if have != pl.Int64 or self.ts_units.get(name, "ns") != "ns":
                    return None
            elif dtype == pl.String:
                if have != pl.String:
                    return None
            elif not _casts_exactly(have, dtype):
                return None
            columns.append(column.alias(name))
        return columns

    def _time_column(self, raw: pl.DataFrame, name: str, values: pl.Expr, check_units: bool) -> _Times:
        """Timestamps of one canonical time column as int ns, and which rows could not be read."""
        source = raw.select(values).to_series()
        unit = self.ts_units.get(name, "ns")
        ts, overflow = scale_to_ns(source, unit, source.name, self.where)
        unread = ts.is_null() & source.is_not_null()
        if name == "ts_event" and self.fallback is not None:
            # only an *empty* field falls back: a value that is there but unreadable stays bad
            fallback_expr = _source_expr(self.fallback, raw.height, 0)
            assert fallback_expr is not None
            other = raw.select(fallback_expr).to_series()
            other_ts, other_overflow = scale_to_ns(other, self.ts_fallback_unit, other.name, self.where)
            empty = source.is_null()
            ts = ts.zip_with(~empty, other_ts)
            unread = unread | (empty & other_ts.is_null() & other.is_not_null())
            if other_overflow is not None:
                overflow = (empty & other_overflow) if overflow is None else overflow | (empty & other_overflow)
        required = name == "ts_event"
        bad = ts.is_null() if required else unread
        if overflow is not None:
            unread = unread & ~overflow
            bad = bad & ~overflow
        if check_units and bad.len() and (bad.all() if required else unread.sum() == source.is_not_null().sum() > 0):
            raise _ts_error(source, ts, unit, self.where, required=required, fallback=self.fallback is not None)
        return _Times(ts, bad, overflow, source.name)


@dataclass(frozen=True, slots=True)
class _Times:
    """One time column read: ns (null where unreadable), rows that could not be read (for ts_event: also
    empty ones), rows whose value overflows int64 ns in its unit (None: none), and the file column."""

    ns: pl.Series
    unread: pl.Series
    overflow: pl.Series | None
    column: str


def _first(found: list[tuple[str, str, pl.Series]], field: Literal[0, 1]) -> pl.Expr:
    """Per row, the reason (``field`` 0) or the column (1) of the first entry whose mask is true."""
    return pl.coalesce([pl.when(pl.lit(mask)).then(pl.lit(what[field], pl.String)) for *what, mask in found])


@dataclass(frozen=True, slots=True)
class Parsed:
    """A canonical frame and, per row, what could not be read (null: all was read; None: no row failed)
    and the file column it was in."""

    frame: pl.DataFrame
    problems: pl.Series | None
    columns: pl.Series | None = None


def _spec(source: str) -> ColumnSpec:
    if is_template(source):
        return ColumnSpec("template", template=source, parts=parse_template(source))
    return ColumnSpec("column", column=source)


def _casts_exactly(have: pl.DataType, want: pl.DataType) -> bool:
    """True if every value of type ``have`` converts to a number of type ``want`` without a failure:
    any integer or float to Float64, an integer that fits to Int64 (a float or a UInt64 may not)."""
    if want == pl.Float64:
        return have.is_integer() or have.is_float()
    if want == pl.Int64:
        return have.is_signed_integer() or have in (pl.UInt8, pl.UInt16, pl.UInt32)
    return False


def _source_expr(spec: ColumnSpec, height: int, first_row: int) -> pl.Expr | None:
    """The expression reading one canonical column from the file columns (None: it has no source)."""
    if spec.how == "column":
        assert spec.column is not None
        return pl.col(spec.column)
    if spec.how == "template":
        pieces = [e for lit, col in spec.parts for e in _template_exprs(lit, col)]
        return pl.concat_str(pieces).alias(spec.template)  # messages name it by its template
    if spec.how == "row_index":
        return pl.int_range(first_row, first_row + height, dtype=pl.Int64)
    return None


def _template_exprs(literal: str, column: str | None) -> list[pl.Expr]:
    exprs = [pl.lit(literal)] if literal else []
    if column is not None:
        exprs.append(pl.col(column).cast(pl.String))
    return exprs


def to_ns(values: pl.Series, unit: TsUnit, column: str, where: str) -> pl.Series:
    """Convert a timestamp column to Int64 ns UTC; values that cannot be read, or overflow int64 ns
    (:func:`scale_to_ns`), become null."""
    return scale_to_ns(values, unit, column, where)[0]


def scale_to_ns(values: pl.Series, unit: TsUnit, column: str, where: str) -> tuple[pl.Series, pl.Series | None]:
    """Convert a timestamp column to Int64 ns UTC, and tell which values overflow int64 ns in ``unit``.

    Integers and decimals are read in ``unit``; text is parsed as numbers in ``unit``, or as ISO-8601
    when ``unit`` is ``"iso"`` (no offset means UTC); a datetime column is used as it is. A value that
    cannot be read becomes null; one whose scaled value would not fit in int64 (after 2262, e.g. a
    nanosecond time read as milliseconds) becomes null too, never a wrapped time, and is true in the
    second result (None when no value overflows).
    """
    dtype = values.dtype
    if dtype == pl.Datetime or dtype == pl.Date:
        ns = values.cast(pl.Datetime("ns")).dt.epoch("ns") if dtype == pl.Date else values.dt.epoch("ns")
        return ns, None
    if unit == "iso":
        if dtype != pl.String:
            raise SourceError(
                f"column {column!r} of {where} holds {dtype} values, not ISO-8601 text; set ts_unit to the "
                f"unit of its numbers ('ns', 'us', 'ms' or 's'). first value: {_sample(values)!r}"
            )
        return _iso_to_ns(values), None
    factor = UNIT_NS[unit]
    if dtype == pl.String:
        ints = values.str.to_integer(strict=False)
        if ints.null_count() == values.null_count():
            return _scale_ints(ints, factor)  # the common case: whole numbers; the slower readers run only when needed
        text = values.str.strip_chars()
        ints, overflow = _scale_ints(text.str.to_integer(strict=False), factor)
        decimals, decimal_overflow = _decimal_to_ns(text, factor)
        floats, float_overflow = _float_to_ns(text.cast(pl.Float64, strict=False), factor)  # e.g. 1.7e9
        if float_overflow is not None:  # a value read as an integer or a decimal is not read as a float
            float_overflow = float_overflow & ints.is_null() & decimals.is_null()
            if overflow is not None or decimal_overflow is not None:
                earlier = [m for m in (overflow, decimal_overflow) if m is not None]
                float_overflow = float_overflow & ~pl.select(pl.any_horizontal(earlier)).to_series()
        masks = [m for m in (overflow, decimal_overflow, float_overflow) if m is not None]
        any_over = pl.select(pl.any_horizontal(masks)).to_series() if masks else None
        return ints.fill_null(decimals).fill_null(floats), any_over
    if dtype.is_integer():
        if dtype == pl.UInt64:
            too_big = values > _INT64_MAX
            if too_big.any():
                ints, over = _scale_ints(_null_where(values, too_big).cast(pl.Int64), factor)
                return ints, too_big if over is None else too_big | over
        return _scale_ints(values.cast(pl.Int64), factor)
    if dtype.is_float():
        return _float_to_ns(values, factor)
    raise SourceError(
        f"column {column!r} of {where} holds {dtype} values, which are not timestamps; map a column of "
        "integers, decimals, ISO-8601 text or datetimes to it"
    )


def _scale_ints(ints: pl.Series, factor: int) -> tuple[pl.Series, pl.Series | None]:
    """``ints * factor``, null where that overflows int64 (and which rows did); two reductions when none does."""
    if factor == 1 or ints.len() == 0:
        return ints, None
    limit = _INT64_MAX // factor
    high, low = ints.max(), ints.min()
    if (high is None or int(high) <= limit) and (low is None or int(low) >= -limit):  # type: ignore[arg-type]
        return ints * factor, None
    over = ((ints > limit) | (ints < -limit)).fill_null(False)
    return _null_where(ints, over) * factor, over


def _iso_to_ns(text: pl.Series) -> pl.Series:
    """Parse ISO-8601 text; polars infers one format per call, so rows of another format get a retry."""
    result = _parse_iso(text)
    for _ in range(_ISO_RETRIES):
        failed = result.is_null() & text.is_not_null()
        if not failed.any():
            break
        retry = _parse_iso(text.filter(failed))
        if retry.null_count() == retry.len():
            break
        result = result.scatter(failed.arg_true(), retry)
    return result


def _parse_iso(text: pl.Series) -> pl.Series:
    return text.str.to_datetime(time_unit="ns", time_zone="UTC", strict=False).dt.epoch("ns")


def _null_where(values: pl.Series, mask: pl.Series) -> pl.Series:
    """``values`` with nulls where ``mask`` is true."""
    return values.zip_with(~mask, values.clear(values.len()))


def _decimal_to_ns(text: pl.Series, factor: int) -> tuple[pl.Series, pl.Series | None]:
    """Exact ns from decimal text such as ``"1723161600.000001"`` (a float would be off by ~200 ns)."""
    digits = len(str(factor)) - 1
    parts = text.str.extract_groups(r"^([+-]?)(\d+)\.(\d*)$").struct.unnest()
    sign, whole, frac = (parts.get_column(c) for c in parts.columns)
    frac_units = frac.str.slice(0, digits).str.pad_end(digits, "0").str.to_integer(strict=False) if digits else 0
    scaled, overflow = _scale_ints(whole.str.to_integer(strict=False), factor)
    magnitude = scaled + frac_units
    if overflow is None and magnitude.len() and (magnitude.min() or 0) < 0:  # type: ignore[operator]
        overflow = (magnitude < 0).fill_null(False)  # the fraction carried it past int64
        magnitude = _null_where(magnitude, overflow)
    return magnitude * (1 - 2 * (sign == "-").cast(pl.Int64)), overflow


def _float_to_ns(values: pl.Series, factor: int) -> tuple[pl.Series, pl.Series | None]:
    """Whole and fractional parts apart, so whole units stay exact beyond float precision; NaN and
    infinities are unreadable, values beyond int64 ns overflow."""
    clean = values.fill_nan(None)
    over = (clean.abs() >= 2.0**63 / factor).fill_null(False)
    overflow = None
    if over.any():
        overflow = over & clean.is_finite().fill_null(False)
        clean = _null_where(clean, over)
    whole = clean.floor()
    ns = whole.cast(pl.Int64) * factor + ((clean - whole) * factor).round().cast(pl.Int64)
    return ns.rename(values.name), overflow


def _sample(values: pl.Series) -> Any:
    non_null = values.drop_nulls()
    return non_null[0] if non_null.len() else None


def _ts_error(
    raw: pl.Series, parsed: pl.Series, unit: TsUnit, where: str, *, required: bool, fallback: bool
) -> SourceError:
    bad_rows = parsed.is_null() if required else parsed.is_null() & raw.is_not_null()
    bad = raw.filter(bad_rows)
    sample = bad[0] if bad.len() else None
    expected = "ISO-8601 text such as '2024-08-09T00:00:00Z'" if unit == "iso" else f"numbers of {unit}"
    what = "an empty timestamp" if sample is None or sample == "" else f"the value {sample!r}"
    if fallback:
        hint = "set ts_unit and ts_fallback_unit to the units of params.ts_event and params.ts_fallback"
    elif sample is None or sample == "":
        hint = "map another column, or set ts_fallback to a column to use where this one is empty"
    else:
        hint = f"set ts_unit to the column's unit ({', '.join(repr(u) for u in TS_UNITS)}) or map another column"
    return SourceError(
        f"cannot read the timestamps in column {raw.name!r} of {where} as {expected}: found {what}, and "
        f"none of the {raw.len()} rows of the first block could be read, so the setting is wrong, not the "
        f"data; {hint}"
    )
