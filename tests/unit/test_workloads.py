"""The W1 benchmark workload: deterministic, the right size and shape, disorder within its bounds."""

from __future__ import annotations

import gzip
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mdp.workloads import W1Spec, disorder_ns, generate_w1, late_rows, session_bounds, write_w1

SPEC = W1Spec(rows=200_000, symbols=500)
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def base() -> pl.DataFrame:
    return generate_w1(SPEC)


@pytest.fixture(scope="module")
def late() -> pl.DataFrame:
    return generate_w1(SPEC, late=True)


def test_same_spec_gives_the_same_frame(base: pl.DataFrame) -> None:
    assert generate_w1(SPEC).equals(base)


def test_another_seed_gives_another_frame(base: pl.DataFrame) -> None:
    other = generate_w1(W1Spec(rows=SPEC.rows, symbols=SPEC.symbols, seed=SPEC.seed + 1))
    assert not other.equals(base)


def test_columns_and_counts(base: pl.DataFrame) -> None:
    assert base.schema == pl.Schema({"ts_event": pl.Int64, "symbol": pl.String, "price": pl.Float64, "size": pl.Int64})
    assert base.height == SPEC.rows
    assert base.get_column("symbol").n_unique() == SPEC.symbols
    assert base.null_count().sum_horizontal().item() == 0


def test_activity_is_skewed(base: pl.DataFrame) -> None:
    counts = base.get_column("symbol").value_counts(sort=True).get_column("count").to_numpy()
    assert counts[0] > 20 * counts[-1]
    assert counts[0] / SPEC.rows > 0.1  # Zipf with exponent 1 over 500 names: the top one has ~15%


def test_timestamps_lie_in_the_session_on_a_microsecond_grid(base: pl.DataFrame) -> None:
    start, end = session_bounds(SPEC.day)
    assert end - start == int(6.5 * 3600 * SECOND)
    assert start == 1_710_423_000 * SECOND  # 2024-03-14 09:30 EDT = 13:30 UTC
    ts = base.get_column("ts_event").to_numpy()
    assert ts.min() >= start
    assert ts.max() < end
    assert np.all(ts % 1_000 == 0)


def test_session_bounds_follow_new_york_time() -> None:
    winter_start, _ = session_bounds(date(2024, 1, 10))
    assert winter_start % (86_400 * SECOND) == (14 * 3600 + 30 * 60) * SECOND  # EST: 14:30 UTC


def test_prices_are_whole_cents_and_sizes_round_tens(base: pl.DataFrame) -> None:
    cents = base.get_column("price").to_numpy() * 100
    assert np.all(cents >= 1)
    assert np.allclose(cents, np.rint(cents), rtol=0, atol=1e-6)
    sizes = base.get_column("size").to_numpy()
    assert sizes.min() >= 10
    assert sizes.max() <= 490
    assert np.all(sizes % 10 == 0)


def test_prices_walk_in_small_steps_per_symbol(base: pl.DataFrame) -> None:
    steps = (
        base.with_row_index("seq")
        .sort("ts_event", "seq")
        .select(pl.col("price").diff().over("symbol").abs().alias("step"))
        .drop_nulls()
        .get_column("step")
    )
    assert steps.quantile(0.99) < 1.0  # cents to tens of cents per trade, never a jump to another level


def test_base_file_disorder_stays_within_two_seconds(base: pl.DataFrame) -> None:
    lag = disorder_ns(base.get_column("ts_event").to_numpy())
    assert lag.max() <= 2 * SECOND
    out_of_order = np.count_nonzero(lag > 0)
    assert 0.005 * SPEC.rows < out_of_order <= 0.01 * SPEC.rows
    assert late_rows(base.get_column("ts_event").to_numpy(), 5 * SECOND) == 0


def test_late_file_holds_the_same_trades_with_rows_delayed_ten_seconds_or_more(
    base: pl.DataFrame, late: pl.DataFrame
) -> None:
    keys = ["ts_event", "symbol", "price", "size"]
    assert late.sort(keys).equals(base.sort(keys))
    lag = disorder_ns(late.get_column("ts_event").to_numpy())
    delayed = np.count_nonzero(lag >= 10 * SECOND)
    assert delayed > 0.0015 * SPEC.rows
    assert lag.max() <= 60 * SECOND
    n_late = late_rows(late.get_column("ts_event").to_numpy(), 5 * SECOND)
    assert delayed <= n_late <= round(SPEC.rows * SPEC.late_fraction)


def test_disorder_ns_measures_lag_behind_the_newest_earlier_row() -> None:
    assert disorder_ns(np.array([5, 3, 9, 1, 10], dtype=np.int64)).tolist() == [0, 2, 0, 8, 0]
    assert disorder_ns(np.array([], dtype=np.int64)).tolist() == []


def test_write_w1_writes_parquet_and_csv_gz(tmp_path: Path) -> None:
    spec = W1Spec(rows=1_000, symbols=10)
    frame = write_w1(tmp_path / "w1.parquet", spec, csv_gz=tmp_path / "w1.csv.gz")
    assert pl.read_parquet(tmp_path / "w1.parquet").equals(frame)
    with gzip.open(tmp_path / "w1.csv.gz") as fh:
        assert pl.read_csv(fh, schema=frame.schema).equals(frame)


def test_bad_spec_is_rejected() -> None:
    with pytest.raises(ValueError, match="rows"):
        W1Spec(rows=0)
