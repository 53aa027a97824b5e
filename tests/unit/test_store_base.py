"""The batch rules every store shares: conform, fill defaults, dedupe by key, filters, SQL text."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError, PermanentStoreError
from mdp.records import SCHEMAS
from mdp.stores import sql
from mdp.stores.base import ReadFilter, check_kind, check_table, dedupe, prepare, quote_ident
from mdp.stores.samples import sample_bars, sample_trades


def test_prepare_conforms_columns_and_fills_seq_and_revision_defaults() -> None:
    raw = pl.DataFrame({"price": [1.0], "symbol": ["A"], "ts_event": [5], "size": [2]})
    out = prepare(raw, "trade")
    assert out.schema == pl.Schema(SCHEMAS["trade"])
    assert out.row(0, named=True)["seq"] == 0
    bars = sample_bars(2).with_columns(pl.lit(None, pl.Int64).alias("revision"))
    assert prepare(bars, "bar").get_column("revision").to_list() == [0, 0]


def test_prepare_refuses_a_missing_column_and_a_null_key() -> None:
    with pytest.raises(PermanentStoreError, match="close"):
        prepare(sample_bars(2).drop("close"), "bar")
    with pytest.raises(PermanentStoreError, match="symbol"):
        prepare(sample_trades(2).with_columns(pl.lit(None, pl.String).alias("symbol")), "trade")


def test_dedupe_keeps_the_highest_revision_and_the_first_of_equals() -> None:
    batch = pl.concat([sample_bars(3, revision=r, close=c) for r, c in [(0, 1.0), (2, 2.0), (2, 3.0), (1, 4.0)]])
    keys = ["symbol", "timeframe", "start"]
    assert dedupe(batch, "bar").sort(keys).equals(sample_bars(3, revision=2, close=2.0).sort(keys))


def test_dedupe_of_trades_keeps_the_first_row_of_a_key() -> None:
    out = dedupe(pl.concat([sample_trades(4, price=1.0), sample_trades(4, price=2.0)]), "trade")
    assert sorted(out.get_column("price").to_list()) == [1.0, 2.0, 3.0, 4.0]


def test_dedupe_returns_a_frame_without_duplicates_unchanged() -> None:
    batch = sample_bars(10)
    assert dedupe(batch, "bar") is batch


@settings(max_examples=60, deadline=None)
@given(
    revisions=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=30),
    cut=st.integers(0, 30),
)
def test_one_batch_and_two_batches_resolve_duplicates_alike(revisions: list[tuple[int, int]], cut: int) -> None:
    """The store rule applied per batch then across batches equals the rule applied to the whole stream."""
    rows = pl.concat(
        [
            sample_bars(1, revision=rev, close=float(i)).with_columns(pl.lit(str(key)).alias("symbol"))
            for i, (key, rev) in enumerate(revisions)
        ]
    )
    whole = dedupe(rows, "bar").sort("symbol")
    first, second = dedupe(rows[:cut], "bar"), dedupe(rows[cut:], "bar")
    # what a store does with the second batch: replace only on a strictly higher revision
    merged = first.join(second, on=["symbol", "timeframe", "start"], how="full", coalesce=True, suffix="_new")
    newer = pl.col("revision_new").is_not_null() & (
        pl.col("revision").is_null() | (pl.col("revision_new") > pl.col("revision"))
    )
    chosen = merged.select(
        "symbol",
        pl.when(newer).then(pl.col("close_new")).otherwise(pl.col("close")).alias("close"),
        pl.when(newer).then(pl.col("revision_new")).otherwise(pl.col("revision")).alias("revision"),
    ).sort("symbol")
    assert chosen.rows() == whole.select("symbol", "close", "revision").rows()


def test_read_filter_is_half_open_on_the_time_column_of_the_kind() -> None:
    clause, params = ReadFilter("bar", symbol="A", start=10, end=20).sql("%s")
    assert clause == ' WHERE "symbol" = %s AND "start" >= %s AND "start" < %s'
    assert params == ["A", 10, 20]
    assert ReadFilter("trade").sql() == ("", [])
    frame = sample_trades(6)
    picked = frame.filter(ReadFilter("trade", start=1_000, end=2_000).expr())
    assert picked.get_column("ts_event").unique().to_list() == [1_000]


def test_table_names_are_plain_identifiers_and_are_quoted() -> None:
    assert quote_ident("md.bars") == '"md"."bars"'
    assert check_table("bars_1m") == "bars_1m"
    for bad in ("bars; drop table x", 'a"b', "", "a.b.c", "1bars"):
        with pytest.raises(ConfigError):
            check_table(bad)


def test_check_kind_names_the_kinds_a_store_keeps() -> None:
    assert check_kind("quote") == "quote"
    with pytest.raises(PermanentStoreError, match="trade"):
        check_kind("tick")


def test_upsert_replaces_provisional_bars_and_bars_of_a_higher_revision_and_ignores_repeated_trades() -> None:
    bars = sql.upsert("bars", "bar", "SELECT 1")
    assert 'ON CONFLICT ("symbol", "timeframe", "start") DO UPDATE SET "end" = excluded."end"' in bars
    assert bars.endswith(
        """WHERE cur."quality" = 'provisional' OR (COALESCE(excluded."quality", '') <> 'provisional' """
        'AND excluded."revision" > cur."revision")'
    )
    assert sql.upsert("trades", "trade", "SELECT 1").endswith('ON CONFLICT ("symbol", "ts_event", "seq") DO NOTHING')


def test_create_table_makes_the_key_the_primary_key() -> None:
    ddl = sql.create_table("bars", "bar", {pl.Int64: "INTEGER", pl.Float64: "REAL", pl.String: "TEXT"})
    assert ddl.startswith('CREATE TABLE IF NOT EXISTS "bars" ("symbol" TEXT NOT NULL')
    assert ddl.endswith('PRIMARY KEY ("symbol", "timeframe", "start"))')
    with pytest.raises(PermanentStoreError, match="lacks the columns"):
        sql.check_columns("bars", "bar", ["symbol", "timeframe", "start"])
