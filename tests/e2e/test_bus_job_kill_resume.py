"""A real ``mdp run`` job reading 1,000,000 trades from Redis or RabbitMQ into 1-minute bars in SQLite, with
checkpoints, killed with SIGKILL twice (each time while a store transaction is under way) and resumed: its
table equals the table of the same job reading the file directly, every row and column.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import partial
from pathlib import Path

import pytest

from mdp.testing import crash
from mdp.workloads import W1Spec, write_w1
from tests.conftest import _port_open, unavailable
from tests.e2e.bus_kill_worker import publish
from tests.e2e.test_bus_kill_resume import PARTITIONS, PORTS, delete

pytestmark = [pytest.mark.services, pytest.mark.timeout(900)]

ROWS = 2_000_000  # a resumed run must still be going when its own first checkpoint is in


def bus_job(job: str, bus: str, stream: str, target: crash.Target) -> str:
    return f"""\
job: {job}
checkpoint: {{interval: {crash.INTERVAL}}}
dag:
  nodes:
    - id: trades
      type: source.{bus}
      params: {{stream: {json.dumps(stream)}, partitions: {PARTITIONS}, until: caught_up}}
    - {{id: bars, type: operator.bars, params: {{timeframe: 1m}}}}
    - id: store
      {target.sink_yaml()}
  edges: [[trades, bars], [bars, store]]
"""


@pytest.mark.parametrize("bus", list(PORTS))
def test_a_bus_job_killed_twice_resumes_to_the_bars_of_a_direct_replay(
    bus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDP_HOME", str(tmp_path / "home"))  # the direct runs of both buses share a job name
    if not _port_open("127.0.0.1", PORTS[bus]):
        unavailable(f"{bus} at 127.0.0.1:{PORTS[bus]}")
    trades = tmp_path / "w1.parquet"
    write_w1(trades, W1Spec(rows=ROWS))
    expected, _ = crash.baseline("sqlite", trades, tmp_path / "direct")
    stream = f"mdpjob{'.' if bus == 'rabbitmq' else ':'}{uuid.uuid4().hex[:8]}"
    target = crash.Target("sqlite", str(tmp_path / "bus.sqlite"))
    config = tmp_path / "bus.yaml"
    job = f"bus-{bus}-{stream[-8:]}"
    config.write_text(bus_job(job, bus, stream, target))
    try:
        asyncio.run(publish(bus, stream, PARTITIONS, str(trades), str(tmp_path / "published")))
        runs = []
        for _ in range(2):  # each kill once this run committed a checkpoint (however slow its start-up) and a
            # write is under way: a resumed run reads the rest in about a second, so it must not wait for more
            committed = partial(target.committed, job, target.epoch(job))
            r = crash.run(config, kill_after=0.1, wait_in_flight=True, probe=target.in_flight, ready=committed)
            runs.append(r)
            assert r.killed, f"the job ended before it was killed: {r.stderr[-2000:]}"
        last = crash.run(config)
        runs.append(last)
        assert last.code == 0, last.stderr[-3000:]
        assert any(r.resumed is not None for r in runs[1:]), [(r.wall, r.stderr[-600:], r.stdout[-600:]) for r in runs]
        equal, detail = crash.compare(expected, target.read())
        assert equal, detail
    finally:
        asyncio.run(delete(bus, stream))
