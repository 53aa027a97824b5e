"""Store faults on the real PostgreSQL: lost connections are retried without losing or doubling a row,
and a store that can never work ends the job with one clear paragraph."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from mdp.errors import NodeError, PermanentStoreError
from mdp.operators.bars import BarsOperator
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.sources.synthetic import SyntheticSource
from mdp.stores import PostgresSink, PostgresStore
from mdp.testing import run_graph
from tests.conftest import PG_HOST, PG_PORT
from tests.e2e.test_cli import mdp

pytestmark = pytest.mark.services

ADMIN = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test"


@pytest.fixture
def other_dsn(postgres_dsn: str) -> Iterator[str]:
    """A second fresh database on the same server (the uninterrupted run writes there)."""
    name = f"mdp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"host={PG_HOST} port={PG_PORT} user=postgres dbname={name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def trades_file(folder: Path) -> Path:
    """A Parquet file of 360,000 trades (12 symbols, 90 s, 2% delivered up to 200 ms late) to replay."""
    path = folder / "trades.parquet"
    if not path.exists():
        feed = SyntheticSource(
            symbols=12, rate=4_000, duration="90s", seed=11, disorder=0.02, max_delay="200ms"
        )  # fmt: skip
        pl.concat(list(feed.frames())).select("ts_event", "symbol", "price", "size").write_parquet(path)
    return path


def bars_job(dsn: str, app: str, trades: Path) -> tuple[Dag, PostgresSink]:
    """source.replay -> operator.bars (1s) -> sink.postgres, in small batches so there are many writes."""
    source = ReplaySource(
        path=str(trades), columns={"ts_event": "ts_event", "symbol": "symbol", "price": "price", "size": "size"},
        frame_rows=3_000, max_out_of_orderness="100ms",
    )  # fmt: skip
    sink = PostgresSink(
        dsn=dsn, table="bars_1s", batch_rows=40, application_name=app, retry_base_delay="5ms", retry_max_delay="50ms"
    )
    dag = Dag().add_node(Node("trades", source)).add_node(Node("bars", BarsOperator("1s")))
    dag.add_node(Node("store", sink)).add_edge("trades", "bars").add_edge("bars", "store")
    return dag, sink


def terminate(dsn: str, app: str) -> int:
    """End the sessions named ``app`` on this test's own database, from another connection."""
    database = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s AND datname = %s",
            (app, database),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


def stored_bars(dsn: str) -> pl.DataFrame:
    with PostgresStore(dsn, tables={"bar": "bars_1s"}, read_only=True) as store:
        return store.read("bar")


async def test_sessions_killed_mid_job_are_retried_and_the_table_equals_an_uninterrupted_run(
    postgres_dsn: str, other_dsn: str, tmp_path: Path
) -> None:
    trades = trades_file(tmp_path)
    calm_dag, _ = bars_job(other_dsn, "mdp-calm", trades)
    await run_graph(calm_dag)
    app = f"mdp-faults-{uuid.uuid4().hex[:8]}"
    dag, sink = bars_job(postgres_dsn, app, trades)
    kills = {"idle": 0, "in_transaction": 0}
    staged = committed = 0

    def kill_inside_the_transaction() -> None:  # runs in the writer's thread, before COMMIT
        nonlocal staged
        staged += 1
        if staged in (4, 9, 15):
            kills["in_transaction"] += terminate(postgres_dsn, app)

    def kill_between_writes(seconds: float, rows: int) -> None:  # after a write committed, in the writer's thread
        nonlocal committed
        committed += 1  # counted here: the sink's batch count runs ahead of the commits while it writes ahead
        if committed in (2, 5, 8, 11):
            kills["idle"] += terminate(postgres_dsn, app)

    sink.store.on_write_staged = kill_inside_the_transaction
    sink.write_listeners.append(kill_between_writes)
    stats = await run_graph(dag)

    assert committed > 11, "fewer writes than the test kills between"
    assert kills == {"idle": 4, "in_transaction": 3}
    assert sink.stats()["retries"] >= 7  # every kill cost the next attempt at least once
    assert stats.nodes["store"].state == "completed"
    assert_frame_equal(stored_bars(postgres_dsn), stored_bars(other_dsn))
    assert sink.rows_written == stats.nodes["store"].rows_in  # each bar written once, none lost


JOB = """\
job: faults
dag:
  nodes:
    - id: trades
      type: source.synthetic
      params: {{symbols: 3, rate: 200, duration: 30s, seed: 5}}
    - id: bars
      type: operator.bars
      params: {{timeframe: 1s}}
    - id: store
      type: sink.postgres
      params: {{dsn: "{dsn}", table: bars_1s, batch_rows: 20}}
  edges:
    - [trades, bars]
    - [bars, store]
"""


def run_job(tmp_path: Path, dsn: str) -> tuple[int, str]:
    (tmp_path / "job.yaml").write_text(JOB.format(dsn=dsn))
    result = mdp("run", "--config", "job.yaml", cwd=tmp_path)
    return result.returncode, result.stderr


def test_a_missing_database_fails_the_run_with_one_paragraph_saying_what_to_change(
    tmp_path: Path, postgres_dsn: str
) -> None:
    missing = postgres_dsn.rsplit("dbname=", 1)[0] + "dbname=mdp_no_such_database"
    code, err = run_job(tmp_path, missing)
    assert code == 1
    assert "Traceback" not in err
    assert err.count("\n") == 1
    assert err.startswith("error: job 'faults' failed: node 'store' (sink.postgres")
    assert "PermanentStoreError: cannot open store postgres:" in err
    assert "dbname=mdp_no_such_database" in err
    assert "table bars_1s" in err
    assert 'database "mdp_no_such_database" does not exist' in err
    assert "create the database (createdb) or fix dbname in the dsn" in err


def test_an_existing_table_with_an_incompatible_column_fails_the_run_naming_table_column_and_fix(
    tmp_path: Path, postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            'CREATE TABLE bars_1s (symbol TEXT, timeframe TEXT, start BIGINT, "end" BIGINT, open FLOAT8, '
            "high FLOAT8, low FLOAT8, close FLOAT8, volume TEXT, notional FLOAT8, vwap FLOAT8, trades BIGINT, "
            "revision BIGINT, quality TEXT, PRIMARY KEY (symbol, timeframe, start))"
        )
    code, err = run_job(tmp_path, postgres_dsn)
    assert code == 1
    assert "Traceback" not in err
    assert err.count("\n") == 1
    assert "table 'bars_1s' exists but its column types do not fit bar records" in err
    assert '"volume" is text, where mdp writes DOUBLE PRECISION' in err
    assert 'ALTER TABLE "bars_1s" ALTER COLUMN "volume" TYPE DOUBLE PRECISION' in err


async def test_a_write_refused_mid_job_fails_it_after_the_batches_before_were_committed(
    postgres_dsn: str, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(  # a store-side rule the data breaks only after a while: no bar may start after t
            'CREATE TABLE bars_1s (symbol TEXT COLLATE "C" NOT NULL, timeframe TEXT COLLATE "C" NOT NULL, '
            'start BIGINT NOT NULL, "end" BIGINT, open FLOAT8, high FLOAT8, low FLOAT8, close FLOAT8, volume FLOAT8, '
            "notional FLOAT8, vwap FLOAT8, trades BIGINT, revision BIGINT, quality TEXT, "
            "PRIMARY KEY (symbol, timeframe, start), CONSTRAINT early CHECK (start < 1704205860000000000))"
        )
    dag, sink = bars_job(postgres_dsn, "mdp-refused", trades_file(tmp_path))
    with pytest.raises(NodeError, match="store") as info:
        await run_graph(dag)
    cause = info.value.cause
    assert isinstance(cause, PermanentStoreError)
    assert re.match(r"cannot write \d+ bar rows to store postgres:", str(cause))
    assert "table bars_1s" in str(cause)
    assert "CheckViolation 23514" in str(cause)
    assert "breaks a constraint of the table" in str(cause)
    assert sink.stats()["retries"] == 0  # a permanent error is not retried
    assert stored_bars(postgres_dsn).height == sink.rows_written > 0  # what came before is committed
