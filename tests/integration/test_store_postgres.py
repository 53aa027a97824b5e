"""PostgreSQL specifics on the real server: COPY staging, plain-table fallback, errors sorted for retries."""

from __future__ import annotations

import polars as pl
import psycopg
import pytest

from mdp.errors import ConfigError, PermanentStoreError, TransientStoreError
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.graph import Dag, Node
from mdp.stores import PostgresSink, PostgresStore, StoreSource
from mdp.stores.samples import sample_bars, sample_trades
from mdp.testing import ListSink, ListSource, run_graph

pytestmark = pytest.mark.services


def test_without_timescaledb_the_table_is_plain_with_the_key_as_primary_key(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, tables={"bar": "bars"}) as store:
        assert store.hypertables == {"bar": False}
    with psycopg.connect(postgres_dsn) as raw:
        pk = raw.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'bars'::regclass AND contype = 'p'"
        ).fetchone()
        types: dict[str, str] = dict(
            raw.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'bars'")
        )
    assert pk == ("PRIMARY KEY (symbol, timeframe, start)",)
    assert (types["start"], types["end"], types["volume"]) == ("bigint", "bigint", "double precision")


def test_a_large_batch_goes_through_the_staging_table_which_stays_private(postgres_dsn: str) -> None:
    frame = pl.concat([sample_trades(1_000, origin=i * 10**9) for i in range(20)])
    with PostgresStore(postgres_dsn, tables={"trade": "trades"}) as store:
        assert store.write("trade", frame) == 20_000
        assert store.write("trade", frame) == 20_000  # sent again, stored once
        assert store.read("trade").height == 20_000
        with psycopg.connect(postgres_dsn) as other:
            assert other.execute("SELECT to_regclass('mdp_stage_trades')").fetchone() == (None,)


def test_a_schema_qualified_table_is_created_in_its_schema(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        raw.execute("CREATE SCHEMA md")
    with PostgresStore(postgres_dsn, tables={"bar": "md.bars_1m"}) as store:
        store.write("bar", sample_bars(3))
        assert store.read("bar").height == 3


def test_the_dsn_comes_from_the_environment_and_its_password_is_never_shown(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDP_POSTGRES_DSN", postgres_dsn)
    with PostgresStore(tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(2))
    shown = PostgresStore("postgresql://mdp:s3cret@db.example:5433/md", tables={"bar": "bars"}).location
    assert "s3cret" not in shown
    assert shown == "postgres:user=mdp dbname=md host=db.example port=5433 table bars"
    monkeypatch.delenv("MDP_POSTGRES_DSN")
    with pytest.raises(ConfigError, match="MDP_POSTGRES_DSN"):
        PostgresStore()


def test_a_refused_connection_is_transient() -> None:
    with pytest.raises(TransientStoreError, match="refused"):
        PostgresStore("host=127.0.0.1 port=1 user=postgres dbname=test connect_timeout=5").open()


def test_an_unknown_role_or_database_is_permanent(postgres_dsn: str) -> None:
    with pytest.raises(PermanentStoreError, match="does not exist"):
        PostgresStore(postgres_dsn + " user=nobody_here").open()
    with pytest.raises(PermanentStoreError, match="does not exist"):
        PostgresStore("host=127.0.0.1 user=postgres dbname=no_such_db_here").open()


def test_a_terminated_session_is_transient_and_the_next_write_reconnects(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, tables={"bar": "bars"}) as store:
        store.write("bar", sample_bars(4))
        assert store._conn is not None
        pid = store._conn.info.backend_pid
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))  # what an admin shutdown does to us
        with pytest.raises(TransientStoreError):
            store.write("bar", sample_bars(8))
        assert store.write("bar", sample_bars(8)) == 8  # the retry a wrapper would make
        assert store.read("bar").height == 8


def test_an_existing_table_of_another_shape_is_permanent(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        raw.execute("CREATE TABLE bars (symbol text, ts bigint)")
    with pytest.raises(PermanentStoreError, match="lacks the columns"):
        PostgresStore(postgres_dsn, tables={"bar": "bars"}).open()


def test_a_failed_batch_is_rolled_back(postgres_dsn: str) -> None:
    with PostgresStore(postgres_dsn, tables={"bar": "bars"}) as store:

        def fail() -> None:
            raise RuntimeError("interrupted")

        store.on_write_staged = fail
        with pytest.raises(RuntimeError, match="interrupted"):
            store.write("bar", sample_bars(4))
        store.on_write_staged = None
        assert store.read("bar").height == 0
        assert store.write("bar", sample_bars(4)) == 4


async def test_a_job_writes_bars_to_postgres_and_another_reads_them_back(postgres_dsn: str) -> None:
    bars = sample_bars(40)
    dag = Dag()
    dag.add_node(Node("src", ListSource([bars[:20], Watermark(10), bars[20:], bars[:5]], kind="bar")))
    dag.add_node(Node("sink", PostgresSink(dsn=postgres_dsn, table="bars_1m", batch_rows=16)))
    dag.add_edge("src", "sink")
    stats = await run_graph(dag)
    extra = stats.nodes["sink"].extra
    # rows_written counts rows sent after in-batch dedupe; the replayed 5 are sent and ignored by the key
    assert (extra["rows_received"], extra["rows_written"], extra["batches"]) == (45, 45, 3)
    assert extra["location"].startswith("postgres:user=postgres dbname=mdp_test_")
    assert extra["location"].endswith(" table bars_1m")

    sink = ListSink(kind="bar")
    dag = Dag()
    dag.add_node(Node("src", StoreSource(store="postgres", dsn=postgres_dsn, table="bars_1m", symbol="AAA")))
    dag.add_node(Node("out", sink))
    dag.add_edge("src", "out")
    await run_graph(dag)
    assert sink.frame.height == 20
    assert sink.watermarks[-1] == END_OF_TIME
