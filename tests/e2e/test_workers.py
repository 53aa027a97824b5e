"""Worker processes sharing a stream's partitions: kill -9 mid-stream or in a transaction, PostgreSQL or
NATS away for a while, ``--workers N``; every time the bars table equals one process's, every row and column.

W1 trades are published to a fresh NATS stream of 12 partitions; the reference is one ``mdp run`` of the
same graph reading every partition (``mdp.testing.scaleout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mdp.testing import scaleout
from mdp.testing.bus_conformance import Relay
from mdp.testing.crash import mdp_command
from mdp.workloads import W1Spec, write_w1
from tests.conftest import NATS_URL, PG_HOST, PG_PORT, _port_open, unavailable

pytestmark = pytest.mark.services


def _setup(nats_url: str, postgres_dsn: str, tmp_path: Path, rows: int, symbols: int) -> Iterator[scaleout.Setup]:
    setup = scaleout.Setup(nats_url, postgres_dsn, tmp_path, partitions=12)
    try:
        path = tmp_path / "trades.parquet"
        write_w1(path, W1Spec(rows=rows, symbols=symbols))
        scaleout.publish(setup, path)
        scaleout.reference(setup)
        yield setup
    finally:
        scaleout.delete_stream(setup)


def w1_test(test: Callable[[scaleout.Setup], None]) -> Callable[[scaleout.Setup], None]:
    """A test on ``w1``: all of them run on one xdist worker (``--dist loadgroup``), so the 2M-trade stream is
    published and its reference run once, not once per worker at the same time (three at once took CI past the
    120 s default); the first one's time includes that setup."""
    return pytest.mark.timeout(400)(pytest.mark.xdist_group("workers_w1")(test))


@pytest.fixture(scope="module")
def w1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[scaleout.Setup]:
    """W1 as the issue sizes it: 2,000,000 trades, 500 symbols, 12 partitions; published once for the module
    (each round writes its own table under its own group)."""
    import psycopg

    if not _port_open(PG_HOST, PG_PORT):
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT}")
    if not _port_open("127.0.0.1", 4222):
        unavailable("NATS at 127.0.0.1:4222")
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test"
    name = f"mdp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = f"host={PG_HOST} port={PG_PORT} user=postgres dbname={name}"
        yield from _setup(NATS_URL, dsn, tmp_path_factory.mktemp("w1"), 2_000_000, 500)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def small(nats_url: str, postgres_dsn: str, tmp_path: Path) -> Iterator[scaleout.Setup]:
    yield from _setup(nats_url, postgres_dsn, tmp_path, 300_000, 100)


def check(rnd: scaleout.Round) -> None:
    assert not rnd.errors, rnd.errors
    assert (rnd.lost, rnd.doubled, rnd.differing, rnd.extra) == (0, 0, 0, 0), rnd.line()
    assert rnd.equal, rnd.line()


@w1_test
def test_three_workers_with_one_then_two_killed_store_the_bars_of_one_process(w1: scaleout.Setup) -> None:
    """Must show 1: W1 on 12 partitions, 3 workers, one round with one kill -9 and one with two."""
    assert w1.reference is not None
    assert w1.reference.height > 100_000
    for number, kills in ((1, 1), (2, 2)):
        rnd = scaleout.run_round(w1, number, workers=3, kills=kills)
        assert rnd.kills == kills, rnd.line()  # mid-stream: the victims had not finished
        check(rnd)


def test_a_worker_killed_while_its_transaction_is_in_flight_loses_and_doubles_nothing(small: scaleout.Setup) -> None:
    """Must show 2: the kill waits until the victim's store session is in a statement or a transaction."""
    hits = 0
    for number in (1, 2):
        rnd = scaleout.run_round(small, number, workers=2, kills=1, seed=number * 7, delay=0.1)
        assert rnd.kills == 1, rnd.line()
        hits += rnd.in_flight_kills
        check(rnd)
    assert hits >= 1, "no kill met a transaction in flight"


class ThreadedRelay:
    """A :class:`Relay` on its own event loop in a thread, cut and resumed from blocking code."""

    def __init__(self, port: int) -> None:
        self.relay = Relay(port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self.relay.start())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    def cut(self) -> None:
        self._call(self.relay.cut())

    def resume(self) -> None:
        self._call(self.relay.start())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@pytest.mark.parametrize("away", ["postgres", "nats", "both"])
def test_workers_wait_while_postgres_or_nats_is_away_and_then_go_on_losing_nothing(
    small: scaleout.Setup, away: str
) -> None:
    """Must show 4: the servers cannot be stopped here (other jobs use them), so the workers reach them through
    relays that drop every connection and refuse new ones for 3 s."""
    pg, bus = ThreadedRelay(5432), ThreadedRelay(4222)
    dsn = small.dsn.replace("port=5432", f"port={pg.relay.port}")
    url = f"nats://127.0.0.1:{bus.relay.port}"
    cuts = [r for name, r in (("postgres", pg), ("nats", bus)) if away in (name, "both")]

    def outage(_group: str) -> None:
        for relay in cuts:
            relay.cut()
        time.sleep(3)
        for relay in cuts:
            relay.resume()

    try:
        rnd = scaleout.run_round(small, 1, workers=2, kills=0, url=url, dsn=dsn, meanwhile=outage, timeout=240)
        assert rnd.codes == [0, 0], rnd.errors
        check(rnd)
        said = "\n".join(rnd.logs)
        if away != "nats":  # the lock sessions died with the connections: each worker joined again
            assert "lost its database session" in said, said[-3000:]
        if away != "postgres":  # a partition's reader retried, or the client reconnected
            assert "retrying" in said or "NATS connection" in said, said[-3000:]
    finally:
        pg.close()
        bus.close()


@w1_test
def test_workers_option_starts_n_workers_and_list_and_status_show_their_partitions(w1: scaleout.Setup) -> None:
    """``mdp run --workers 3``: three processes share the partitions; ``mdp list`` and ``mdp status`` name
    each worker's partitions while they run."""
    seen: dict[str, object] = {}
    env_home = w1.work / "mdp-home"

    def look(group: str) -> None:
        env = {"MDP_HOME": str(env_home), "PATH": "/usr/bin:/bin"}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "metrics" not in seen:  # each worker prints where it serves
            log = (w1.work / f"{group}-w0.log").read_text()
            for url in re.findall(r"metrics on (http://\S+)", log):
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as page:
                    text = page.read().decode()
                    if "mdp_partition_lag_messages{" in text:
                        seen["metrics"] = text
                        break
            time.sleep(0.1)
        while time.monotonic() < deadline:
            listed = subprocess.run([*mdp_command(), "list", "--json"], capture_output=True, text=True, env=env)
            workers = [r for r in json.loads(listed.stdout or "[]") if r["name"].startswith(f"{group}.w")]
            if len(workers) == 3 and all(r["counters"].get("partitions") for r in workers):
                seen["list"] = workers
                text = subprocess.run([*mdp_command(), "list"], capture_output=True, text=True, env=env).stdout
                seen["list_text"] = text
                status = subprocess.run(
                    [*mdp_command(), "status", "--job", workers[0]["name"]], capture_output=True, text=True, env=env
                )
                seen["status"] = status.stdout
                return
            time.sleep(0.2)

    rnd = scaleout.run_round(
        w1,
        1,
        kills=0,
        meanwhile=look,
        command=["run", "--config", "{config}", "--workers", "3", "--metrics-port", "0"],
    )
    check(rnd)
    assert "list" in seen, "three workers with partitions never showed in mdp list"
    workers = seen["list"]
    assert isinstance(workers, list)
    owned = [set(r["counters"]["partitions"]) for r in workers]
    assert sum(len(o) for o in owned) <= 12
    assert all(owned)
    assert "PARTITIONS" in str(seen["list_text"])
    assert "partitions" in str(seen["status"])
    assert "owners" in str(seen["status"])
    metrics = str(seen.get("metrics", ""))
    assert re.search(r'mdp_partition_lag_messages\{.*partition="\d+".*\} \d', metrics), metrics[:2000]
    assert "mdp_partition_lag_seconds{" in metrics


@w1_test
def test_durable_consumers_are_acked_only_through_committed_positions(w1: scaleout.Setup) -> None:
    """With ``durable``, each partition's consumer is acked after the commit, never past the committed offset."""
    import psycopg

    w1.source_extra = ", durable: W"
    try:
        rnd = scaleout.run_round(w1, 7, workers=2, kills=0)
    finally:
        w1.source_extra = ""
    check(rnd)

    async def floors() -> dict[int, int]:
        import nats

        nc = await nats.connect(w1.url)
        try:
            js = nc.jetstream()
            out = {}
            for k in range(w1.partitions):
                info = await js.consumer_info(w1.stream, f"W_p{k}")
                out[k] = int(info.ack_floor.stream_seq if info.ack_floor else 0)
            return out
        finally:
            await nc.close()

    acked = asyncio.run(floors())
    with psycopg.connect(w1.dsn) as conn:
        rows = conn.execute("SELECT job, offsets FROM mdp_checkpoints").fetchall()
    committed = {}
    for job, offsets in rows:
        if ".p" in job and job.startswith("scale-r7"):
            position = json.loads(offsets)["bus"]["offsets"]
            committed.update({int(k): int(v) for k, v in position.items()})
    assert set(committed) == set(range(w1.partitions))
    assert any(acked.values()), acked
    assert all(acked[k] <= committed[k] for k in committed), (acked, committed)
