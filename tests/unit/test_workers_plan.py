"""What makes a job a worker job, the job each partition runs, and how list/status show workers."""

from __future__ import annotations

import pytest

from mdp.app.jobs import JobRecord, render_jobs, render_status
from mdp.app.workers import partition_job, partition_key, worker_plan
from mdp.cli import _without_workers
from mdp.config.builder import build_dag
from mdp.config.model import JobConfig
from mdp.errors import ConfigError

DSN = "host=127.0.0.1 user=postgres dbname=test"


def job(read: object = "owned", sink: str = "sink.postgres", checkpoint: bool = True) -> JobConfig:
    params = {"dsn": DSN, "table": "bars_1m"} if sink == "sink.postgres" else {"path": "x.sqlite", "table": "b"}
    return JobConfig.from_dict(
        {
            "job": "w",
            "checkpoint": checkpoint,
            "dag": {
                "nodes": [
                    {
                        "id": "bus",
                        "type": "source.nats",
                        "params": {"stream": "S", "subject": "s", "partitions": 6, "read": read},
                    },
                    {"id": "bars", "type": "operator.bars", "params": {"timeframe": "1m"}},
                    {"id": "store", "type": sink, "params": params},
                ],
                "edges": [["bus", "bars"], ["bars", "store"]],
            },
        }
    )


def test_a_job_reading_owned_partitions_into_postgres_is_a_worker_job() -> None:
    config = job()
    plan = worker_plan(config, build_dag(config), "w")
    assert plan is not None
    assert (plan.source_node, plan.partitions, plan.group, plan.dsn) == ("bus", 6, "w", DSN)


@pytest.mark.parametrize("read", ["all", [0, 1]])
def test_a_job_reading_all_or_a_list_runs_as_one_process(read: object) -> None:
    config = job(read)
    assert worker_plan(config, build_dag(config), "w") is None


@pytest.mark.parametrize(
    ("sink", "checkpoint", "says"),
    [("sink.sqlite", True, "sink.postgres"), ("sink.postgres", False, "checkpoints are off")],
)
def test_a_worker_job_without_postgres_or_checkpoints_is_refused_with_the_fix(
    sink: str, checkpoint: bool, says: str
) -> None:
    config = job(sink=sink, checkpoint=checkpoint)
    with pytest.raises(ConfigError, match=says):
        worker_plan(config, build_dag(config), "w")


def test_each_partition_runs_the_graph_reading_that_partition_under_its_own_checkpoint_key() -> None:
    config = job()
    plan = worker_plan(config, build_dag(config), "w")
    assert plan is not None
    three = partition_job(config, plan, 3)
    assert three.checkpoint.key == partition_key("w", 3) == "w.p3"
    assert three.dag is not None
    assert three.dag.nodes[0].params["read"] == [3]
    assert config.dag is not None
    assert config.dag.nodes[0].params["read"] == "owned"
    dag = build_dag(three)
    assert dag.nodes[0].operator.parts == [3]  # type: ignore[attr-defined]


def test_workers_option_is_dropped_from_each_workers_command_line() -> None:
    argv = ["run", "--config", "w.yaml", "--workers", "3", "--metrics-port=0", "--workers=2"]
    assert _without_workers(argv) == ["run", "--config", "w.yaml", "--metrics-port=0"]


def test_list_and_status_show_which_worker_owns_which_partitions() -> None:
    counters = {
        "worker": "vm:11",
        "group": "w",
        "partitions": [4, 0],
        "owners": {"0": "vm:11", "4": "vm:11", "1": "vm:12"},
        "lag_messages": {"0": 3},
        "lag_seconds": {"0": 1.5},
    }
    worker = JobRecord(1, "w.w11", "running", 11, "vm", None, "worker", 0, 0, None, counters)
    plain = JobRecord(2, "other", "finished", 12, "vm", None, "dag", 0, 0, 1, {})
    table = render_jobs([worker, plain])
    assert table.splitlines()[0].split()[-1] == "PARTITIONS"
    assert table.splitlines()[1].split()[-1] == "0,4"
    status = render_status(worker)
    assert "partitions 0,4" in status
    assert "owners     vm:11: 0,4" in status
    assert "owners     vm:12: 1" in status
    assert "p0 3 msgs 1.5s" in status
