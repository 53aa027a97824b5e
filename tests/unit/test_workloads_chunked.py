"""The chunked W1 generator: the same rows as the one-shot generator it replaced, whatever the chunking."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from mdp.workloads import (
    ROW_GROUP_ROWS,
    W1Spec,
    disorder_ns,
    generate_w1,
    iter_w1,
    late_rows,
    session_bounds,
    session_days,
    stream_w1,
    symbol_names,
)

SECOND = 1_000_000_000


def one_shot_w1(spec: W1Spec, *, late: bool = False) -> pl.DataFrame:
    """The generator as it was before it was chunked (one session, every array at once): the reference."""
    n = spec.rows
    root = np.random.SeedSequence(spec.seed)
    rng_trades, rng_disorder, rng_late = (np.random.default_rng(s) for s in root.spawn(3))
    start_ns, end_ns = session_bounds(spec.day)
    span_us = (end_ns - start_ns) // 1_000
    offsets_us = np.sort(rng_trades.integers(0, span_us, size=n, dtype=np.int64))
    weights = 1.0 / np.arange(1, spec.symbols + 1, dtype=np.float64) ** spec.zipf
    sym = rng_trades.choice(spec.symbols, size=n, p=weights / weights.sum()).astype(np.int32)
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
    delivery_us = offsets_us.copy()
    chosen = rng_disorder.permutation(n)
    k_disorder = round(n * spec.disorder_fraction)
    disorder_idx = chosen[:k_disorder]
    max_delay_us = int(round(spec.max_disorder_s * 1_000_000))
    if max_delay_us > 0:
        delivery_us[disorder_idx] += rng_disorder.integers(1, max_delay_us + 1, size=k_disorder, dtype=np.int64)
    if late:
        k_late = round(n * spec.late_fraction)
        late_idx = chosen[k_disorder : k_disorder + k_late]
        lo, hi = (int(round(s * 1_000_000)) for s in spec.late_delay_s)
        delivery_us[late_idx] += rng_late.integers(lo, hi + 1, size=k_late, dtype=np.int64)
    order = np.lexsort((np.arange(n), delivery_us))
    names = pl.Series("symbol", symbol_names(spec.symbols), dtype=pl.String)
    return pl.DataFrame(
        {
            "ts_event": start_ns + offsets_us[order] * 1_000,
            "symbol": names.gather(sym[order]),
            "price": cents[order] / 100.0,
            "size": sizes[order],
        },
        schema={"ts_event": pl.Int64, "symbol": pl.String, "price": pl.Float64, "size": pl.Int64},
    )


@pytest.mark.parametrize("late", [False, True])
def test_default_spec_gives_the_rows_of_the_one_shot_generator(late: bool) -> None:
    assert generate_w1(late=late).equals(one_shot_w1(W1Spec(), late=late))


@pytest.mark.parametrize("chunk_rows", [1, 7, 999, 4_096, 50_000])
def test_any_chunking_gives_the_same_rows(chunk_rows: int) -> None:
    spec = W1Spec(rows=20_000, symbols=50, max_disorder_s=30.0, disorder_fraction=0.05)
    want = one_shot_w1(spec, late=True)
    assert pl.concat(iter_w1(spec, late=True, chunk_rows=chunk_rows)).equals(want)


def test_stream_w1_writes_the_same_file_in_row_groups(tmp_path: Path) -> None:
    spec = W1Spec(rows=600_000, symbols=300)
    path = tmp_path / "w1.parquet"
    assert stream_w1(path, spec, chunk_rows=100_003) == spec.rows
    assert pl.read_parquet(path).equals(one_shot_w1(spec))
    meta = pq.ParquetFile(path).metadata
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= ROW_GROUP_ROWS


def test_a_week_of_sessions_lies_on_weekdays_in_session_hours() -> None:
    spec = W1Spec(rows=50_000, symbols=40, sessions=5)
    days = session_days(spec)
    assert days == [date(2024, 3, d) for d in (14, 15, 18, 19, 20)]  # Thu, Fri, (weekend), Mon, Tue, Wed
    frame = pl.concat(iter_w1(spec, chunk_rows=7_001))
    ts = frame.get_column("ts_event").to_numpy()
    per_day = [((ts >= lo) & (ts < hi)).sum() for lo, hi in map(session_bounds, days)]
    assert sum(per_day) == spec.rows
    assert min(per_day) > 0.15 * spec.rows
    assert disorder_ns(ts).max() <= 2 * SECOND
    assert late_rows(ts, 5 * SECOND) == 0
    one_day = dataclasses.replace(spec, sessions=1)
    assert (
        frame.get_column("symbol")
        .value_counts()
        .sort("symbol")
        .equals(generate_w1(one_day).get_column("symbol").value_counts().sort("symbol"))
    )


def test_bad_sessions_or_chunks_are_rejected() -> None:
    with pytest.raises(ValueError, match="session"):
        W1Spec(sessions=0)
    with pytest.raises(ValueError, match="chunk_rows"):
        next(iter_w1(W1Spec(rows=10, symbols=2), chunk_rows=0))
