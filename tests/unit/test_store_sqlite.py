"""SQLite specifics: WAL mode, the table it creates, schema checks and how its errors are sorted."""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError, PermanentStoreError, TransientStoreError
from mdp.records import SCHEMAS
from mdp.stores import SqliteStore
from mdp.stores.samples import sample_bars, sample_trades
from mdp.stores.sqlite import BLOCK_STATEMENTS, CHUNK_ROWS, WRITER_CHECKPOINT_PAGES

FLOATS = [c for c, t in SCHEMAS["bar"].items() if t == pl.Float64]


def test_open_switches_the_file_to_wal_with_normal_sync(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persists in the file


def test_commits_leave_the_checkpoint_to_a_background_connection(tmp_path: Path) -> None:
    """The writer's own auto-checkpoint is pushed out of its commits; the log still reaches the file
    (without the background checkpointer, a few hundred log pages would wait for SQLite's 1,000)."""
    path = tmp_path / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as store:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WRITER_CHECKPOINT_PAGES
        empty = path.stat().st_size
        for k in range(5):
            store.write("bar", sample_bars(2_000, origin=k * 10**15))
        deadline = time.monotonic() + 10
        while path.stat().st_size <= empty + 100_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert path.stat().st_size > empty + 100_000, "the committed pages never reached the database file"
        assert threading.active_count() > 1
    assert not [t for t in threading.enumerate() if t.name == "mdp-sqlite-checkpointer"]  # closed with the store
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM bars").fetchone()[0] == 10_000


def test_the_bars_table_has_integer_ns_times_and_the_key_as_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "bars.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}):
        pass
    with sqlite3.connect(path) as raw:
        info = {row[1]: (row[2], row[5]) for row in raw.execute("PRAGMA table_info(bars)")}
    assert (info["symbol"], info["timeframe"], info["start"]) == (("TEXT", 1), ("TEXT", 2), ("INTEGER", 3))
    assert (info["end"], info["volume"], info["quality"]) == (("INTEGER", 0), ("REAL", 0), ("TEXT", 0))


def test_only_the_named_tables_are_created(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with SqliteStore(path, tables={"trade": "ticks"}) as store:
        store.write("trade", sample_trades(4))
        assert store.read("bar").height == 0  # no table for bars: an empty frame, not an error
        with pytest.raises(PermanentStoreError, match="no table for 'bar'"):
            store.write("bar", sample_bars(1))
    with sqlite3.connect(path) as raw:
        names = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert names == ["ticks"]


def test_a_schema_qualified_table_name_works(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "q.sqlite", tables={"bar": "main.bars_1m"}) as store:
        store.write("bar", sample_bars(3))
        assert store.read("bar").height == 3


def test_an_existing_table_of_another_shape_is_a_permanent_error(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE bars (symbol TEXT, ts INTEGER)")
    with pytest.raises(PermanentStoreError, match=r"lacks the columns \['timeframe'"):
        SqliteStore(path, tables={"bar": "bars"}).open()


def test_a_write_blocked_by_another_writer_is_transient_and_a_retry_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "busy.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}, busy_timeout=0.01) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's job holds the write lock
        with pytest.raises(TransientStoreError, match="SQLITE_BUSY"):
            store.write("bar", sample_bars(4))
        other.execute("ROLLBACK")
        other.close()
        assert store.write("bar", sample_bars(4)) == 4
        assert store.read("bar").height == 4


def test_a_read_only_store_reads_but_refuses_to_write(tmp_path: Path) -> None:
    path = tmp_path / "ro.sqlite"
    with SqliteStore(path, tables={"bar": "bars"}) as writer:
        writer.write("bar", sample_bars(5))
        with SqliteStore(path, tables={"bar": "bars"}, read_only=True) as reader:
            assert reader.read("bar", symbol="AAA").height == 3
            with pytest.raises(PermanentStoreError, match="read-only"):
                reader.write("bar", sample_bars(1))


def test_opening_a_missing_file_read_only_is_a_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(PermanentStoreError, match="unable to open"):
        SqliteStore(tmp_path / "missing.sqlite", read_only=True).open()


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "f.sqlite", tables={"bar": "bars"}) as store:

        def fail() -> None:
            raise OSError("disk pulled out")

        store.on_write_staged = fail
        with pytest.raises(OSError, match="disk pulled out"):
            store.write("bar", sample_bars(4))
        store.on_write_staged = None
        assert store.read("bar").height == 0
        assert store.write("bar", sample_bars(4)) == 4


def test_location_names_the_file_and_table(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.sqlite", tables={"bar": "bars"})
    assert store.location == f"sqlite:{tmp_path / 'x.sqlite'} table bars"
    assert store.spec()["path"] == str(tmp_path / "x.sqlite")


def test_a_bad_table_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="table name"):
        SqliteStore(tmp_path / "x.sqlite", tables={"bar": "bars; DROP TABLE x"})


def test_frames_with_columns_in_another_order_and_narrow_types_are_conformed(tmp_path: Path) -> None:
    frame = sample_bars(2).select(reversed(sample_bars(2).columns)).with_columns(pl.col("trades").cast(pl.Int32))
    with SqliteStore(tmp_path / "c.sqlite", tables={"bar": "bars"}) as store:
        store.write("bar", frame)
        assert store.read("bar").equals(sample_bars(2).sort("symbol", "timeframe", "start"))


# -- batches larger than one statement (CHUNK_ROWS rows a statement, the rest one row each) ---------

_HEIGHTS = st.sampled_from([1, 2, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1, 2 * CHUNK_ROWS + 37])
_DOUBLES = st.floats(allow_nan=False)  # every finite double, the infinities, subnormals and -0.0


def _bars(height: int, draw: st.DrawFn) -> pl.DataFrame:
    """``height`` bars with distinct keys and drawn prices; some columns one value throughout, some not."""
    minute = 60_000_000_000
    tf_mixed, quality_mixed = draw(st.booleans()), draw(st.booleans())
    prices = draw(st.lists(_DOUBLES, min_size=7 * height, max_size=7 * height))
    return pl.DataFrame(
        {
            "symbol": [f"S{i % 3}" for i in range(height)],
            "timeframe": [("1m", "5m")[i % 2] if tf_mixed else "1m" for i in range(height)],
            "start": [i * minute for i in range(height)],
            "end": [(i + 1) * minute for i in range(height)],
            **{c: prices[j * height : (j + 1) * height] for j, c in enumerate(("open", "high", "low", "close"))},
            "volume": prices[4 * height : 5 * height],
            "notional": prices[5 * height : 6 * height],
            "vwap": [None if i % 5 == 0 else p for i, p in enumerate(prices[6 * height :])],
            "trades": [i for i in range(height)],
            "revision": [0] * height,
            "quality": [("complete", "provisional")[i % 2] if quality_mixed else "complete" for i in range(height)],
        },
        schema=SCHEMAS["bar"],
    )


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_batches_of_any_size_round_trip_bit_exactly(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    frame = _bars(data.draw(_HEIGHTS), data.draw)
    with SqliteStore(tmp_path_factory.mktemp("rt") / "rt.sqlite", tables={"bar": "bars"}) as store:
        assert store.write("bar", frame) == frame.height
        back = store.read("bar")
    expected = frame.sort("symbol", "timeframe", "start")
    assert back.select(pl.exclude(FLOATS)).equals(expected.select(pl.exclude(FLOATS)))
    for column in FLOATS:  # the same doubles, bit for bit (SQLite keeps -0.0 as 0.0, as it always did)
        got = [None if v is None else struct.pack("<d", v + 0.0) for v in back.get_column(column).to_list()]
        want = [None if v is None else struct.pack("<d", v + 0.0) for v in expected.get_column(column).to_list()]
        assert got == want, column


def test_a_batch_of_several_blocks_round_trips(tmp_path: Path) -> None:
    """Rows are bound a block of statements at a time; every block's rows land, and the tail's."""
    height = 2 * CHUNK_ROWS * BLOCK_STATEMENTS + CHUNK_ROWS + 7
    frame = sample_bars(height).with_columns((pl.int_range(height) * 0.25).alias("close"))
    with SqliteStore(tmp_path / "blocks.sqlite", tables={"bar": "bars"}) as store:
        assert store.write("bar", frame) == height
        back = store.read("bar")
    assert back.equals(frame.sort("symbol", "timeframe", "start"))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_the_store_rule_holds_row_by_row_in_batches_larger_than_a_statement(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A provisional bar yields to any later bar; a final bar yields only to a final one of a higher revision."""
    height = 2 * CHUNK_ROWS + 37
    versions = st.tuples(st.integers(0, 2), st.sampled_from(["complete", "provisional"]))
    first, second = (data.draw(st.lists(versions, min_size=height, max_size=height)) for _ in range(2))
    keep_first = data.draw(st.lists(st.booleans(), min_size=height, max_size=height))  # rows left out of the 2nd

    def batch(marks: list[tuple[int, str]], close: float) -> pl.DataFrame:
        frame = sample_bars(height, close=close)
        return frame.with_columns(
            pl.Series("revision", [r for r, _ in marks]), pl.Series("quality", [q for _, q in marks])
        )

    a, b = batch(first, 1.0), batch(second, 1_000.0).filter(~pl.Series(keep_first))
    with SqliteStore(tmp_path_factory.mktemp("rule") / "r.sqlite", tables={"bar": "bars"}) as store:
        store.write("bar", a)
        store.write("bar", b)
        back = store.read("bar").sort("close")
    new = {(r["symbol"], r["timeframe"], r["start"]): r for r in b.iter_rows(named=True)}
    expected = []
    for cur in a.iter_rows(named=True):
        ex = new.get((cur["symbol"], cur["timeframe"], cur["start"]))
        wins = ex is not None and (
            cur["quality"] == "provisional" or (ex["quality"] != "provisional" and ex["revision"] > cur["revision"])
        )
        expected.append(ex if wins else cur)
    assert back.equals(pl.DataFrame(expected, schema=SCHEMAS["bar"]).sort("close"))
