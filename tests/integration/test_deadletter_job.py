"""A job with bad input: source -> operator.bars -> sink, and the source's deadletter port -> sink.deadletter.

1% of the rows carry each kind of malformation. Every one of them must reach the dead-letter store with
its reason, and every valid row must be in a bar: the bars equal a polars batch computation over the
valid rows, and their ``trades`` add up to the number of valid rows.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from mdp.clock import ManualClock
from mdp.operators.bars import BarsOperator
from mdp.records import BAR_SCHEMA
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import RunConfig, RunStats
from mdp.sources.replay import ReplaySource
from mdp.sources.synthetic import SyntheticSource
from mdp.sources.validation import DEADLETTER_SCHEMA, split_frame
from mdp.stores.deadletter import DeadLetterSink
from mdp.testing import ListSink, run_graph

MINUTE = 60_000_000_000
TEN_YEARS = 10 * 365 * 86_400 * 1_000_000_000
#: how each of the first ten rows of every hundred is spoiled in the CSV, and the reason expected
CSV_KINDS = (
    ("nan_price", "nan_price"),
    ("zero_price", "non_positive_price"),
    ("negative_price", "non_positive_price"),
    ("negative_size", "negative_size"),
    ("empty_size", "nan_size"),
    ("empty_symbol", "missing_symbol"),
    ("garbled_time", "bad_timestamp"),
    ("far_future", "future_timestamp"),
    ("text_price", "bad_number"),
    ("missing_field", "malformed_line"),
)


def clean_trades() -> tuple[SyntheticSource, pl.DataFrame]:
    source = SyntheticSource(symbols=20, rate=1_000, duration="3m", seed=11)
    return source, pl.concat(list(source.frames()))


def batch_bars(trades: pl.DataFrame) -> pl.DataFrame:
    """1-minute bars computed in one polars group-by (the reference the streamed bars must equal)."""
    ordered = trades.sort("ts_event", "seq", maintain_order=True)
    return (
        ordered.group_by("symbol", (pl.col("ts_event") // MINUTE * MINUTE).alias("start"), maintain_order=True)
        .agg(
            pl.col("price").first().alias("open"),
            pl.col("price").max().alias("high"),
            pl.col("price").min().alias("low"),
            pl.col("price").last().alias("close"),
            pl.col("size").sum().alias("volume"),
            (pl.col("price") * pl.col("size")).sum().alias("notional"),
            pl.len().cast(pl.Int64).alias("trades"),
        )
        .sort("symbol", "start")
    )


def check_bars(streamed: pl.DataFrame, valid: pl.DataFrame) -> None:
    assert streamed.schema == pl.Schema(BAR_SCHEMA)
    assert streamed["trades"].sum() == valid.height
    got = streamed.sort("symbol", "start")
    want = batch_bars(valid)
    exact = ["symbol", "start", "open", "high", "low", "close", "trades"]
    assert got.select(exact).equals(want.select(exact))
    for column in ("volume", "notional"):
        assert ((got[column] - want[column]).abs() <= 1e-9 * want[column].abs()).all()


async def run_job(source: ReplaySource | SyntheticSource, dead: DeadLetterSink, now: int) -> tuple[ListSink, RunStats]:
    bars = ListSink()
    dag = Dag().add_node(Node("feed", source)).add_node(Node("bars", BarsOperator(timeframe="1m")))
    dag.add_node(Node("store", bars)).add_node(Node("rejects", dead))
    dag.add_edge("feed", "bars").add_edge("bars", "store").add_edge("feed", "rejects", port="deadletter")
    stats = await run_graph(dag, RunConfig(clock=ManualClock(now)), timeout=120)
    assert stats.counter("late_rows") == 0
    return bars, stats


async def test_a_synthetic_feed_with_one_percent_of_each_malformation(tmp_path: Path) -> None:
    clean_source, _ = clean_trades()
    kinds = 9  # BAD_KINDS of a trade feed: 9 ways to spoil a row, 1% each
    source = SyntheticSource(symbols=20, rate=1_000, duration="3m", seed=11, bad_fraction=0.01 * kinds)
    fed = pl.concat(list(source.frames()))
    valid, bad = split_frame(fed, "trade", now_ns=source.start_ns)
    dead_path = tmp_path / "rejects.sqlite"
    bars, stats = await run_job(source, DeadLetterSink(path=dead_path), clean_source.start_ns)

    with sqlite3.connect(dead_path) as conn:
        stored = conn.execute("SELECT row, reason, source, kind FROM deadletter ORDER BY row").fetchall()
    assert stored == [(seq, reason, "feed", "trade") for seq, reason in bad.select("seq", "reason").rows()]
    assert bad["reason"].n_unique() == 7  # every reason a trade feed can produce
    assert stats.counter("bad_records") == bad.height
    assert 0.08 < bad.height / fed.height < 0.10
    check_bars(bars.frame, valid)


def spoiled_csv(path: Path, trades: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, str]]:
    """Write ``trades`` as CSV text with row ``i`` spoiled by ``CSV_KINDS[i % 100]`` (when ``i % 100 < 10``).

    Returns the valid rows and the expected reason per spoiled ``trade_id``.
    """
    text = trades.select(
        pl.col("ts_event").cast(pl.String).alias("ts"),
        "symbol",
        pl.col("price").cast(pl.String),
        pl.col("size").cast(pl.String),
        pl.col("seq").cast(pl.String).alias("trade_id"),
        (pl.col("seq") % 100).alias("kind"),
    )
    spoil = {
        "price": {0: pl.lit("NaN"), 1: pl.lit("0"), 2: "-" + pl.col("price"), 8: pl.lit("1O0.5")},
        "size": {3: "-" + pl.col("size"), 4: pl.lit("")},
        "symbol": {5: pl.lit("")},
        "ts": {6: pl.lit("not-a-time"), 7: (pl.col("ts").cast(pl.Int64) + TEN_YEARS).cast(pl.String)},
    }
    exprs = []
    for column, cases in spoil.items():
        expr = pl.col(column)
        for kind, value in cases.items():
            expr = pl.when(pl.col("kind") == kind).then(value).otherwise(expr)
        exprs.append(expr.alias(column))
    text = text.with_columns(exprs)
    fields = [pl.col(c) for c in ("ts", "symbol", "price", "size", "trade_id")]
    short = [pl.col(c) for c in ("ts", "symbol", "price", "trade_id")]  # a field missing: a malformed line
    lines = text.select(
        pl.when(pl.col("kind") == 9)
        .then(pl.concat_str(short, separator=","))
        .otherwise(pl.concat_str(fields, separator=","))
    ).to_series()
    path.write_text("ts,symbol,price,size,trade_id\n" + "\n".join(lines.to_list()) + "\n")
    kind = trades["seq"] % 100
    expected = {str(seq): CSV_KINDS[k][1] for seq, k in zip(trades["seq"], kind, strict=True) if k < len(CSV_KINDS)}
    return trades.filter(kind >= len(CSV_KINDS)), expected


async def test_a_csv_file_with_one_percent_of_each_malformation(tmp_path: Path) -> None:
    source, trades = clean_trades()
    valid, expected = spoiled_csv(tmp_path / "trades.csv", trades)
    replay = ReplaySource(path=tmp_path / "trades.csv", columns={"ts_event": "ts"}, frame_rows=10_000)
    dead_path = tmp_path / "rejects.jsonl"
    bars, stats = await run_job(replay, DeadLetterSink(path=dead_path), source.start_ns)

    stored = pl.read_ndjson(dead_path, schema=DEADLETTER_SCHEMA)
    found: dict[str, str] = {}
    for reason, raw in stored.select("reason", "raw").rows():
        values = json.loads(raw)
        trade_id = values["text"].rsplit(",", 1)[1] if reason == "malformed_line" else values["trade_id"]
        found[trade_id] = reason
    assert stored.height == len(found) == len(expected) == trades.height // 10
    assert found == expected
    counts = stored["reason"].value_counts()
    assert dict(counts.iter_rows()) == {
        reason: trades.height // 100 * sum(1 for _, r in CSV_KINDS if r == reason) for _, reason in CSV_KINDS
    }
    assert stats.counter("bad_records") == stored.height
    assert replay.stats()["offset"] == trades.height - trades.height // 100  # malformed lines are no rows
    check_bars(bars.frame, valid)


@pytest.mark.parametrize("policy", ["drop", "deadletter"])
async def test_the_bars_do_not_depend_on_what_happens_to_the_bad_rows(tmp_path: Path, policy: str) -> None:
    source, trades = clean_trades()
    valid, _ = spoiled_csv(tmp_path / "trades.csv", trades)
    replay = ReplaySource(path=tmp_path / "trades.csv", columns={"ts_event": "ts"}, on_bad_record=policy)  # type: ignore[arg-type]
    bars, _ = await run_job(replay, DeadLetterSink(path=tmp_path / "rejects.csv"), source.start_ns)
    check_bars(bars.frame, valid)
    written = (tmp_path / "rejects.csv").exists()
    assert written == (policy == "deadletter")
