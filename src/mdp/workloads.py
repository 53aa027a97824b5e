"""Seeded, deterministic benchmark workloads; ``W1`` is one trading session of trades for 500 symbols.

W1 (the default spec): 2,000,000 trades over one 6.5-hour session (09:30-16:00 America/New_York on a
fixed date, stored as UTC ns), 500 symbols whose activity follows a Zipf-like law, per-symbol random-walk
prices on a cent grid, sizes of 10..490 shares in round tens, and event timestamps on a whole-microsecond
grid (so tools that keep microseconds, like ``datetime``, hold them exactly).

The file's row order is the delivery order. 1% of rows are delivered up to 2 s of event time after their
timestamp, so with a 5 s out-of-orderness bound none is late. The ``late`` variant delays another 0.2% of
rows by 10-60 s, which a 5 s bound drops. Both variants hold the same trades (same seed); only the order
differs. ``seq`` is the row position and is not stored. Columns: ``ts_event`` (Int64 ns), ``symbol``,
``price`` (Float64 dollars, whole cents), ``size`` (Int64).

Example::

    >>> frame = generate_w1(W1Spec(rows=1_000, symbols=20))
    >>> frame.columns, frame.height
    (['ts_event', 'symbol', 'price', 'size'], 1000)

``W1Spec(sessions=5)`` spreads the trades over five consecutive weekday sessions. :func:`iter_w1` yields
the rows chunk by chunk and :func:`stream_w1` writes them so, in flat memory (20M rows in a few hundred MB);
the rows are the same whatever the chunking.

Or from a shell: ``python -m mdp.workloads --rows 2000000 --out /tmp/w1`` writes ``w1.parquet`` and
``w1_late.parquet``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "W1Spec",
    "disorder_ns",
    "generate_w1",
    "iter_w1",
    "late_rows",
    "main",
    "session_bounds",
    "session_days",
    "stream_w1",
    "write_w1",
]

_US = 1_000
_S_US = 1_000_000
_NO_TS = np.iinfo(np.int64).min
_SATURDAY = 5
#: rows generated at a time by :func:`iter_w1`
CHUNK_ROWS = 1 << 20
#: Parquet row group of :func:`stream_w1`: polars' default, so the file reads as ``write_w1``'s does
ROW_GROUP_ROWS = 512 * 512
SCHEMA = pl.Schema({"ts_event": pl.Int64, "symbol": pl.String, "price": pl.Float64, "size": pl.Int64})
ARROW_SCHEMA = pa.schema(
    [("ts_event", pa.int64()), ("symbol", pa.large_string()), ("price", pa.float64()), ("size", pa.int64())]
)


@dataclass(frozen=True, slots=True)
class W1Spec:
    """The knobs of the W1 workload. Every field has the value the benchmarks use by default.

    Args:
        rows: trades in the file.
        symbols: distinct symbols.
        seed: the seed of every random draw; the same spec always gives the same file.
        day: the (first) trading day (09:30-16:00 America/New_York).
        sessions: consecutive trading sessions: ``day`` and the weekdays after it (holidays not skipped).
        zipf: exponent of the activity law: symbol ``i`` trades with weight ``1 / (i + 1) ** zipf``.
        disorder_fraction: share of rows delivered after later trades.
        max_disorder_s: how far (event time) such a row may be delivered after its timestamp.
        late_fraction: in the ``late`` variant, share of further rows delayed ``late_delay_s``.
        late_delay_s: (min, max) delay of those rows, seconds.
    """

    rows: int = 2_000_000
    symbols: int = 500
    seed: int = 20_240_314
    day: date = date(2024, 3, 14)
    sessions: int = 1
    zipf: float = 1.0
    disorder_fraction: float = 0.01
    max_disorder_s: float = 2.0
    late_fraction: float = 0.002
    late_delay_s: tuple[float, float] = (10.0, 60.0)

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError(f"w1 needs at least one session, got sessions={self.sessions}")
        if self.rows < 1 or self.symbols < 1:
            raise ValueError(f"w1 needs at least one row and one symbol, got rows={self.rows} symbols={self.symbols}")
        if not 0 <= self.disorder_fraction + self.late_fraction <= 1:
            raise ValueError("w1 disorder_fraction + late_fraction must lie in [0, 1]")
        lo, hi = self.late_delay_s
        if not 0 < lo <= hi:
            raise ValueError(f"w1 late_delay_s must be 0 < min <= max, got {self.late_delay_s}")


def session_bounds(day: date, tz: str = "America/New_York") -> tuple[int, int]:
    """Return the regular session 09:30-16:00 (local time in ``tz``) of ``day`` as UTC ns ``[start, end)``."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(9, 30), tzinfo=zone)
    end = datetime.combine(day, time(16, 0), tzinfo=zone)
    return _epoch_ns(start), _epoch_ns(end)


def _epoch_ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * _US


def symbol_names(count: int) -> list[str]:
    """Names ``S000``, ``S001``, ... (``S000`` is the most active)."""
    width = max(3, len(str(count - 1)))
    return [f"S{i:0{width}d}" for i in range(count)]


def session_days(spec: W1Spec) -> list[date]:
    """The trading days of ``spec``: ``day`` and then the next ``sessions - 1`` weekdays."""
    days = [spec.day]
    d = spec.day
    while len(days) < spec.sessions:
        d += timedelta(days=1)
        if d.weekday() < _SATURDAY:
            days.append(d)
    return days


def _clone(rng: np.random.Generator) -> np.random.Generator:
    """A generator at the same point of the same stream (to draw a later part of it now)."""
    bits = type(rng.bit_generator)()
    bits.state = rng.bit_generator.state
    return np.random.Generator(bits)


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)


def iter_w1(spec: W1Spec | None = None, *, late: bool = False, chunk_rows: int = CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """Generate the W1 trades in delivery order as frames of about ``chunk_rows`` rows each.

    Memory stays near 16 bytes a row (the sorted event times and, briefly, the disorder permutation) plus
    one chunk, so 20M rows fit in a few hundred MB. The rows do not depend on ``chunk_rows``: each random
    stream is drawn in the order a one-shot draw would, so any chunking gives the same trades.
    """
    spec = spec or W1Spec()
    if chunk_rows < 1:
        raise ValueError(f"w1 chunk_rows must be at least 1, got {chunk_rows}")
    n = spec.rows
    root = np.random.SeedSequence(spec.seed)
    rng_trades, rng_disorder, rng_late = (np.random.default_rng(s) for s in root.spawn(3))

    # event times: uniform over the sessions laid end to end, then mapped onto each session's clock
    bounds = [session_bounds(d) for d in session_days(spec)]
    span_us = (bounds[0][1] - bounds[0][0]) // _US
    session_start_us = np.array([start // _US for start, _ in bounds], dtype=np.int64)
    offsets_us = rng_trades.integers(0, span_us * spec.sessions, size=n, dtype=np.int64)
    offsets_us.sort()

    def event_us(lo: int, hi: int) -> np.ndarray:
        off = offsets_us[lo:hi]
        if spec.sessions == 1:
            return np.asarray(session_start_us[0] + off, dtype=np.int64)
        return np.asarray(session_start_us[off // span_us] + off % span_us, dtype=np.int64)

    # the later draws of rng_trades, each positioned where a one-shot draw of the earlier ones leaves it
    rng_symbols = _clone(rng_trades)
    for a, b in _chunks(n, chunk_rows):
        rng_trades.random(b - a)  # what choice(p=...) draws
    start_cents = rng_trades.integers(1_000, 50_000, size=spec.symbols, dtype=np.int64)
    rng_steps = _clone(rng_trades)
    for a, b in _chunks(n, chunk_rows):
        rng_trades.standard_normal(b - a)
    rng_sizes = rng_trades

    # Zipf-like activity: symbol i trades with weight 1 / (i + 1) ** zipf
    weights = 1.0 / np.arange(1, spec.symbols + 1, dtype=np.float64) ** spec.zipf
    weights /= weights.sum()
    # each step's scale is ~2 bp of the symbol's starting price
    step_scale = np.maximum(1.0, start_cents * 0.0002)

    # delivery order: most rows on time, some up to max_disorder_s late, (variant) some 10-60 s late
    chosen = rng_disorder.permutation(n)
    k_disorder = round(n * spec.disorder_fraction)
    delayed = [chosen[:k_disorder].copy()]
    max_delay_us = int(round(spec.max_disorder_s * _S_US))
    delays = [
        rng_disorder.integers(1, max_delay_us + 1, size=k_disorder, dtype=np.int64)
        if max_delay_us > 0
        else np.zeros(k_disorder, dtype=np.int64)
    ]
    if late:
        k_late = round(n * spec.late_fraction)
        delayed.append(chosen[k_disorder : k_disorder + k_late].copy())
        lo, hi = (int(round(s * _S_US)) for s in spec.late_delay_s)
        delays.append(rng_late.integers(lo, hi + 1, size=k_late, dtype=np.int64))
    del chosen
    delayed_idx, delay_us = np.concatenate(delayed), np.concatenate(delays)
    keep = delay_us > 0
    delayed_idx, delay_us = delayed_idx[keep], delay_us[keep]
    by_idx = np.argsort(delayed_idx)
    delayed_idx, delay_us = delayed_idx[by_idx], delay_us[by_idx]

    names = pl.Series("symbol", symbol_names(spec.symbols), dtype=pl.String)
    walk = np.zeros(spec.symbols, dtype=np.int64)  # each symbol's summed steps so far
    empty = np.zeros(0, dtype=np.int64)
    # delayed rows not yet delivered: delivery time, row, event time, symbol, cents, size
    pending: list[np.ndarray] = [empty, empty, empty, empty.astype(np.int32), empty, empty]
    for a, b in _chunks(n, chunk_rows):
        m = b - a
        ts_us = event_us(a, b)
        sym = rng_symbols.choice(spec.symbols, size=m, p=weights).astype(np.int32)
        steps = np.rint(rng_steps.standard_normal(m) * step_scale[sym]).astype(np.int64)
        # per-symbol random walk in whole cents, carried over from the chunks before
        by_symbol = np.argsort(sym, kind="stable")
        walked = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(steps[by_symbol])))
        counts = np.bincount(sym, minlength=spec.symbols)
        group_end = np.cumsum(counts)
        before_group = walked[group_end - counts]
        sym_sorted = sym[by_symbol]
        cents = np.empty(m, dtype=np.int64)
        cents[by_symbol] = start_cents[sym_sorted] + walk[sym_sorted] + walked[1:] - before_group[sym_sorted]
        walk += walked[group_end] - before_group
        np.maximum(cents, 1, out=cents)
        sizes = rng_sizes.integers(1, 50, size=m, dtype=np.int64) * 10

        # the delayed rows of this chunk wait; rows before the next chunk's first event time go out now
        lo, hi = np.searchsorted(delayed_idx, (a, b))
        here = delayed_idx[lo:hi] - a
        on_time = np.ones(m, dtype=bool)
        on_time[here] = False
        cols: tuple[np.ndarray, ...] = (ts_us + 0, np.arange(a, b, dtype=np.int64), ts_us, sym, cents, sizes)
        pending = [np.concatenate((p, c[here])) for p, c in zip(pending, cols, strict=True)]
        pending[0][len(pending[0]) - len(here) :] += delay_us[lo:hi]
        due: np.ndarray
        if b < n:
            edge_us = int(event_us(b, b + 1)[0])
            due = (pending[0] < edge_us) | ((pending[0] == edge_us) & (pending[1] < b))
        else:
            due = np.ones(len(pending[0]), dtype=np.bool_)
        out = [np.concatenate((c[on_time], p[due])) for c, p in zip(cols, pending, strict=True)]
        pending = [p[~due] for p in pending]
        order = np.lexsort((out[1], out[0]))  # by delivery time; ties keep event order
        yield pl.DataFrame(
            {
                "ts_event": out[2][order] * _US,
                "symbol": names.gather(out[3][order]),
                "price": out[4][order] / 100.0,
                "size": out[5][order],
            },
            schema=SCHEMA,
        )


def generate_w1(spec: W1Spec | None = None, *, late: bool = False) -> pl.DataFrame:
    """Generate the W1 trades in delivery order (``late=True``: the variant with late rows)."""
    return pl.concat(iter_w1(spec, late=late), rechunk=True)


def write_w1(
    path: str | Path,
    spec: W1Spec | None = None,
    *,
    late: bool = False,
    csv_gz: str | Path | None = None,
) -> pl.DataFrame:
    """Generate W1 and write it as Parquet to ``path`` (and as gzipped CSV to ``csv_gz``); return it."""
    frame = generate_w1(spec, late=late)
    frame.write_parquet(path, statistics=True)
    if csv_gz is not None:
        frame.write_csv(csv_gz, compression="gzip")
    return frame


def stream_w1(path: str | Path, spec: W1Spec | None = None, *, late: bool = False, chunk_rows: int = CHUNK_ROWS) -> int:
    """Write W1 as Parquet to ``path`` chunk by chunk, never holding the whole file; return the rows written.

    The file holds the rows :func:`write_w1` writes, in row groups of ``ROW_GROUP_ROWS`` (polars' default),
    so memory stays flat at any ``spec.rows`` (20M rows: a few hundred MB).
    """
    rows = 0
    with pq.ParquetWriter(str(path), ARROW_SCHEMA, compression="zstd") as writer:
        for frame in iter_w1(spec, late=late, chunk_rows=chunk_rows):
            writer.write_table(frame.to_arrow().cast(ARROW_SCHEMA), row_group_size=ROW_GROUP_ROWS)
            rows += frame.height
    return rows


def disorder_ns(ts: np.ndarray) -> np.ndarray:
    """For each row, how far its event time lies behind the newest row delivered before it (0 if not)."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.empty_like(ts)
    before[0] = _NO_TS
    np.maximum.accumulate(ts[:-1], out=before[1:])
    lag: np.ndarray = before - ts
    lag[0] = 0
    np.maximum(lag, 0, out=lag)
    return lag


def late_rows(ts: np.ndarray, max_out_of_orderness_ns: int) -> int:
    """Rows older than the watermark in force when they arrive (newest earlier row minus the bound)."""
    return int(np.count_nonzero(disorder_ns(ts) > max_out_of_orderness_ns))


def main(argv: list[str] | None = None) -> None:
    """``python -m mdp.workloads``: write ``w1.parquet`` and ``w1_late.parquet`` into ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m mdp.workloads", description=__doc__.split("\n")[0])
    defaults = W1Spec()
    parser.add_argument("--rows", type=int, default=defaults.rows)
    parser.add_argument("--symbols", type=int, default=defaults.symbols)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=Path())
    parser.add_argument("--sessions", type=int, default=defaults.sessions)
    parser.add_argument("--csv", action="store_true", help="also write .csv.gz files (holds the file in memory)")
    args = parser.parse_args(argv)
    spec = dataclasses.replace(defaults, rows=args.rows, symbols=args.symbols, seed=args.seed, sessions=args.sessions)
    args.out.mkdir(parents=True, exist_ok=True)
    for late, stem in ((False, "w1"), (True, "w1_late")):
        path = args.out / f"{stem}.parquet"
        if args.csv:
            write_w1(path, spec, late=late, csv_gz=args.out / f"{stem}.csv.gz")
        else:
            stream_w1(path, spec, late=late)
        ts = pl.read_parquet(path, columns=["ts_event"]).get_column("ts_event").to_numpy()
        print(f"{path}: {ts.size} rows, max disorder {disorder_ns(ts).max() / 1e9:.3f} s")


if __name__ == "__main__":
    main()
