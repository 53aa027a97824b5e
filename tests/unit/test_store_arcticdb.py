"""``ArcticStore`` details the conformance suite does not reach: nullable integers, the layout, URIs."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from mdp.errors import ConfigError, PermanentStoreError
from mdp.stores.arcticdb import ArcticStore, lmdb_folder, split_target
from mdp.stores.read import store_spec
from mdp.stores.samples import sample_bars, sample_trades


def test_batches_with_and_without_null_receive_times_share_one_table(tmp_path: Path) -> None:
    """ts_recv is kept with its __null flag in every batch, so the table's columns never change."""
    first = sample_trades(4).with_columns(pl.lit(None, pl.Int64).alias("ts_recv"))
    second = sample_trades(4, origin=10_000)
    with ArcticStore(f"lmdb://{tmp_path}", tables={"trade": "trades"}) as store:
        store.write("trade", first)
        store.write("trade", second)
        got = store.read("trade")
    assert_frame_equal(got, pl.concat([first, second]).sort("symbol", "ts_event", "seq"), check_exact=True)


def test_a_null_in_another_integer_column_is_refused(tmp_path: Path) -> None:
    bars = sample_bars(2).with_columns(pl.lit(None, pl.Int64).alias("trades"))
    with (
        ArcticStore(f"lmdb://{tmp_path}", tables={"bar": "bars"}) as store,
        pytest.raises(PermanentStoreError, match="integer columns"),
    ):
        store.write("bar", bars)


def test_a_rewrite_of_an_overlapping_range_keeps_the_rows_outside_it(tmp_path: Path) -> None:
    with ArcticStore(f"lmdb://{tmp_path}", tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(12))
        store.write("bar", sample_bars(12)[4:8].with_columns(pl.col("revision") + 1, pl.col("close") * 2))
        got = store.read("bar")
    want = pl.concat(
        [
            sample_bars(12)[:4],
            sample_bars(12)[4:8].with_columns(pl.col("revision") + 1, pl.col("close") * 2),
            sample_bars(12)[8:],
        ]
    )
    assert_frame_equal(got, want.sort("symbol", "timeframe", "start"), check_exact=True)


def test_validate_connect_reaches_an_arcticdb_store_without_making_its_folder(tmp_path: Path) -> None:
    from mdp.config.connect import check_store

    missing = tmp_path / "not_yet"
    check_store(ArcticStore(f"lmdb://{missing}", tables={"bar": "bars_1m"}))
    assert not missing.exists()
    with ArcticStore(f"lmdb://{tmp_path / 'there'}", tables={"bar": "bars_1m"}) as store:
        store.write("bar", sample_bars(2))
    check_store(ArcticStore(f"lmdb://{tmp_path / 'there'}", tables={"bar": "bars_1m"}))


def test_uris_and_specs() -> None:
    assert lmdb_folder("lmdb:///data/arctic?map_size=2GB") == Path("/data/arctic")
    assert lmdb_folder("s3://host:bucket") is None
    assert split_target("lmdb:///data/arctic#research") == ("lmdb:///data/arctic", "research")
    assert split_target("lmdb:///data/arctic") == ("lmdb:///data/arctic", "mdp")
    assert store_spec("lmdb:///data/arctic") == "arcticdb:lmdb:///data/arctic"
    with pytest.raises(ConfigError, match="lmdb://"):
        ArcticStore("/data/arctic")
