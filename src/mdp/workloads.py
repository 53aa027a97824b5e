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

Or from a shell: ``python -m mdp.workloads --rows 2000000 --out /tmp/w1`` writes ``w1.parquet`` and
``w1_late.parquet``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl

__all__ = ["W1Spec", "disorder_ns", "generate_w1", "late_rows", "main", "session_bounds", "write_w1"]

_US = 1_000
_S_US = 1_000_000
_NO_TS = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class W1Spec:
    """The knobs of the W1 workload. Every field has the value the benchmarks use by default.

    Args:
        rows: trades in the file.
        symbols: distinct symbols.
        seed: the seed of every random draw; the same spec always gives the same file.
        day: the trading day (09:30-16:00 America/New_York).
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
    zipf: float = 1.0
    disorder_fraction: float = 0.01
    max_disorder_s: float = 2.0
    late_fraction: float = 0.002
    late_delay_s: tuple[float, float] = (10.0, 60.0)

    def __post_init__(self) -> None:
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


def generate_w1(spec: W1Spec | None = None, *, late: bool = False) -> pl.DataFrame:
    """Generate the W1 trades in delivery order (``late=True``: the variant with late rows)."""
    spec = spec or W1Spec()
    n = spec.rows
    root = np.random.SeedSequence(spec.seed)
    rng_trades, rng_disorder, rng_late = (np.random.default_rng(s) for s in root.spawn(3))

    start_ns, end_ns = session_bounds(spec.day)
    span_us = (end_ns - start_ns) // _US
    offsets_us = np.sort(rng_trades.integers(0, span_us, size=n, dtype=np.int64))

    # Zipf-like activity: symbol i trades with weight 1 / (i + 1) ** zipf
    weights = 1.0 / np.arange(1, spec.symbols + 1, dtype=np.float64) ** spec.zipf
    sym = rng_trades.choice(spec.symbols, size=n, p=weights / weights.sum()).astype(np.int32)

    # per-symbol random walk in whole cents; each step's scale is ~2 bp of the symbol's starting price
    start_cents = rng_trades.integers(1_000, 50_000, size=spec.symbols, dtype=np.int64)
    step_scale = np.maximum(1.0, start_cents * 0.0002)
    steps = np.rint(rng_trades.standard_normal(n) * step_scale[sym]).astype(np.int64)
    by_symbol = np.argsort(sym, kind="stable")
    walked = np.cumsum(steps[by_symbol])
    counts = np.bincount(sym, minlength=spec.symbols)
    group_start = np.cumsum(counts) - counts
    before_group = np.concatenate((np.zeros(1, dtype=np.int64), walked))[group_start]
    sym_sorted = sym[by_symbol]
    cents = np.empty(n, dtype=np.int64)
    cents[by_symbol] = start_cents[sym_sorted] + walked - before_group[sym_sorted]
    np.maximum(cents, 1, out=cents)
    sizes = rng_trades.integers(1, 50, size=n, dtype=np.int64) * 10

    # delivery order: most rows on time, some up to max_disorder_s late, (variant) some 10-60 s late
    delivery_us = offsets_us.copy()
    chosen = rng_disorder.permutation(n)
    k_disorder = round(n * spec.disorder_fraction)
    disorder_idx = chosen[:k_disorder]
    max_delay_us = int(round(spec.max_disorder_s * _S_US))
    if max_delay_us > 0:
        delivery_us[disorder_idx] += rng_disorder.integers(1, max_delay_us + 1, size=k_disorder, dtype=np.int64)
    if late:
        k_late = round(n * spec.late_fraction)
        late_idx = chosen[k_disorder : k_disorder + k_late]
        lo, hi = (int(round(s * _S_US)) for s in spec.late_delay_s)
        delivery_us[late_idx] += rng_late.integers(lo, hi + 1, size=k_late, dtype=np.int64)
    order = np.lexsort((np.arange(n), delivery_us))  # stable: ties keep event order

    names = pl.Series("symbol", symbol_names(spec.symbols), dtype=pl.String)
    return pl.DataFrame(
        {
            "ts_event": start_ns + offsets_us[order] * _US,
            "symbol": names.gather(sym[order]),
            "price": cents[order] / 100.0,
            "size": sizes[order],
        },
        schema={"ts_event": pl.Int64, "symbol": pl.String, "price": pl.Float64, "size": pl.Int64},
    )


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
    parser.add_argument("--csv", action="store_true", help="also write .csv.gz files")
    args = parser.parse_args(argv)
    spec = dataclasses.replace(defaults, rows=args.rows, symbols=args.symbols, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for late, stem in ((False, "w1"), (True, "w1_late")):
        csv = args.out / f"{stem}.csv.gz" if args.csv else None
        frame = write_w1(args.out / f"{stem}.parquet", spec, late=late, csv_gz=csv)
        lag = disorder_ns(frame.get_column("ts_event").to_numpy())
        print(f"{args.out / stem}.parquet: {frame.height} rows, max disorder {lag.max() / 1e9:.3f} s")


if __name__ == "__main__":
    main()
