"""DeadLetterSink: rejected rows appended to JSON Lines, CSV, SQLite (WAL) or a Parquet directory."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import polars as pl
import pytest

from mdp.clock import ManualClock
from mdp.errors import ConfigError, NodeError, StoreError
from mdp.records import Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import RunConfig
from mdp.sources.synthetic import SyntheticSource
from mdp.sources.validation import DEADLETTER_SCHEMA
from mdp.stores.deadletter import DeadLetterParams, DeadLetterSink
from mdp.testing import ListSink, ListSource, run_graph

T0 = 1_723_161_600_000_000_000


def letters(n: int, first_row: int = 0) -> pl.DataFrame:
    """``n`` dead letters in the canonical schema, one with a null row and symbol."""
    rows = list(range(first_row, first_row + n))
    return pl.DataFrame(
        {
            "source": "feed",
            "kind": "trade",
            "row": [None if i == first_row + 1 else i for i in rows],
            "reason": ["nan_price"] * n,
            "column": "price",
            "ts_detected": T0,
            "symbol": [None if i == first_row + 1 else "A" for i in rows],
            "ts_event": [T0 + i for i in rows],
            "raw": [json.dumps({"price": "nan", "i": i}) for i in rows],
        },
        schema=DEADLETTER_SCHEMA,
    )


async def write(sink: DeadLetterSink, *frames: object) -> DeadLetterSink:
    dag = Dag().add_node(Node("src", ListSource(list(frames)))).add_node(Node("dead", sink))
    dag.add_edge("src", "dead")
    await run_graph(dag)
    return sink


def read_back(path: Path) -> pl.DataFrame:
    if path.suffix == ".jsonl":
        return pl.read_ndjson(path, schema=DEADLETTER_SCHEMA)
    if path.suffix == ".csv":
        return pl.read_csv(path, schema=DEADLETTER_SCHEMA)
    if path.suffix == ".parquet":
        return pl.read_parquet(sorted(path.glob("*.parquet")))
    with sqlite3.connect(path) as conn:
        cursor = conn.execute("SELECT * FROM deadletter ORDER BY rowid")
        names = [d[0] for d in cursor.description]
        return pl.DataFrame(
            cursor.fetchall(), schema=dict(zip(names, DEADLETTER_SCHEMA.values(), strict=True)), orient="row"
        )


@pytest.mark.parametrize("name", ["dead.jsonl", "dead.csv", "dead.sqlite", "dead.parquet"])
async def test_each_format_keeps_every_row_and_value(tmp_path: Path, name: str) -> None:
    path = tmp_path / "out" / name
    sink = await write(DeadLetterSink(path=path, parquet_rows=4), letters(3), Watermark(T0), letters(3, 3))
    assert read_back(path).equals(pl.concat([letters(3), letters(3, 3)]))
    assert sink.stats()["rows_written"] == 6
    assert str(path) in sink.stats()["location"]


@pytest.mark.parametrize("name", ["dead.jsonl", "dead.csv", "dead.db", "dead.parquet"])
async def test_a_second_run_appends_to_what_the_first_wrote(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    await write(DeadLetterSink(path=path), letters(2))
    await write(DeadLetterSink(path=path), letters(3, 2))
    assert read_back(path).equals(pl.concat([letters(2), letters(3, 2)]))


async def test_sqlite_runs_in_wal_mode_in_the_named_table(tmp_path: Path) -> None:
    path = tmp_path / "dead.sqlite"
    sink = await write(DeadLetterSink(path=path, table="rejects"), letters(2))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*), min(reason) FROM rejects").fetchone() == (2, "nan_price")
    assert sink.stats()["location"] == f"sqlite:{path} table rejects"


async def test_sqlite_adds_columns_that_later_frames_bring(tmp_path: Path) -> None:
    path = tmp_path / "dead.sqlite"
    first = pl.DataFrame({"reason": ["late"], "ts_event": [1]})
    second = pl.DataFrame({"reason": ["late"], "ts_event": [2], "symbol": ["A"]})
    await write(DeadLetterSink(path=path), first, second)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT reason, ts_event, symbol FROM deadletter").fetchall() == [
            ("late", 1, None),
            ("late", 2, "A"),
        ]


async def test_parquet_files_appear_whole_and_hold_at_most_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "dead.parquet"
    sink = await write(DeadLetterSink(path=path, parquet_rows=5), letters(3), letters(3, 3), letters(3, 6))
    files = sorted(path.iterdir())
    assert [f.suffix for f in files] == [".parquet", ".parquet"]  # no temporary file left behind
    assert [pl.read_parquet(f).height for f in files] == [6, 3]
    assert sink.stats()["files_written"] == 2


async def test_a_csv_file_with_other_columns_is_not_mixed_into(tmp_path: Path) -> None:
    path = tmp_path / "dead.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(NodeError) as info:
        await write(DeadLetterSink(path=path), letters(1))
    assert isinstance(info.value.cause, StoreError)
    assert "['a', 'b']" in str(info.value.cause)
    assert path.read_text() == "a,b\n1,2\n"


async def test_jsonl_takes_frames_of_any_columns(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    await write(DeadLetterSink(path=path), pl.DataFrame({"x": [1]}), pl.DataFrame({"y": ["z"]}))
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"x": 1}, {"y": "z"}]


async def test_something_other_than_a_frame_is_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    with pytest.raises(NodeError) as info:
        await write(DeadLetterSink(path=tmp_path / "d.jsonl"), {"reason": "x"})
    assert isinstance(info.value.cause, StoreError)
    assert "dict" in str(info.value.cause)


async def test_an_unwritable_path_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NodeError) as info:
        await write(DeadLetterSink(path=tmp_path / "file" / "d.sqlite"), letters(1))
    assert isinstance(info.value.cause, StoreError)
    assert "d.sqlite" in str(info.value.cause)


def test_the_format_comes_from_the_suffix_unless_set() -> None:
    assert DeadLetterSink(path="x.ndjson").format == "jsonl"
    assert DeadLetterSink(path="x.db").format == "sqlite"
    assert DeadLetterSink(path="x.txt", format="csv").format == "csv"
    with pytest.raises(ConfigError, match="suffix"):
        DeadLetterSink(path="x.txt")


def test_params_reject_unknown_keys_and_bad_table_names() -> None:
    with pytest.raises(ConfigError, match="table"):
        DeadLetterSink(path="x.sqlite", table="drop table;")
    with pytest.raises(ValueError, match="extra"):
        DeadLetterParams.model_validate({"path": "x.jsonl", "tabel": "t"})
    params = DeadLetterParams(path="x.sqlite", table="rejects")
    assert DeadLetterSink.from_params(params).params == params


async def test_a_source_deadletter_port_feeds_the_sink_while_good_rows_flow_on(tmp_path: Path) -> None:
    source = SyntheticSource(rate=1_000, duration="5s", bad_fraction=0.05, seed=3)
    sink, dead = ListSink(), DeadLetterSink(path=tmp_path / "dead.sqlite")
    dag = Dag().add_node(Node("feed", source)).add_node(Node("sink", sink)).add_node(Node("dead", dead))
    dag.add_edge("feed", "sink").add_edge("feed", "dead", port="deadletter")
    await run_graph(dag, RunConfig(clock=ManualClock(source.start_ns)))
    stored = read_back(tmp_path / "dead.sqlite")
    assert stored.height == source.stats()["bad_records"] == dead.rows_written > 0
    assert sink.frame.height + stored.height == 5_000
    assert set(stored["source"]) == {"feed"}


@pytest.mark.parametrize("name", ["dead.jsonl", "dead.csv", "dead.parquet"])
async def test_a_sink_that_got_no_rows_names_no_location_for_the_summary(tmp_path: Path, name: str) -> None:
    """The run summary lists each sink's ``location`` under "written to": a file never created is not listed."""
    path = tmp_path / name
    sink = await write(DeadLetterSink(path=path), letters(0))
    assert not path.is_file()
    assert "location" not in sink.stats()
    assert sink.stats()["rows_written"] == 0
