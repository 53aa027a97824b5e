"""``mdp`` end to end, in a subprocess: run, validate, graph, components, signals and the examples."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mdp.config.registry import BUILTINS
from tests.unit.test_config_loading import DOC_YAML
from tests.unit.test_registry import make_plugin

REPO = Path(__file__).resolve().parents[2]
#: 2023-11-14T22:15:00Z, on a 5-minute boundary
START_NS = 1_700_000_100 * 1_000_000_000
#: the ids the design notes promise; the registry may hold more
BUILTIN_IDS = [
    "operator.bars",
    "operator.buffer",
    "operator.filter",
    "operator.map",
    "sink.duckdb",
    "sink.parquet",
    "sink.postgres",
    "sink.sqlite",
    "source.replay",
    "source.store",
    "source.synthetic",
]


def clean_env(cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without ``MDP_*`` variables, a job registry under ``cwd``, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MDP_")}
    return {**base, "MDP_HOME": str(cwd / ".mdp-home"), **(env or {})}


def mdp(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mdp`` in ``cwd`` with a clean environment plus ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "mdp", *args],
        cwd=cwd,
        env=clean_env(cwd, env),
        capture_output=True,
        text=True,
        timeout=110,
    )


def write_trades(path: Path, minutes: int = 5, symbols: int = 3) -> int:
    """A gzip CSV in the shape of the documented config (ts_ns, symbol, price, size); return its rows."""
    n = minutes * 60 * symbols
    frame = pl.DataFrame(
        {
            "ts_ns": [START_NS + i * 1_000_000_000 // symbols for i in range(n)],
            "symbol": [f"S{i % symbols}" for i in range(n)],
            "price": [100.0 + (i % 17) * 0.25 for i in range(n)],
            "size": [float(1 + i % 5) for i in range(n)],
        }
    )
    path.write_bytes(gzip.compress(frame.write_csv().encode()))
    return n


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """A folder with the documented job file (bars.yaml) and its trades.csv.gz."""
    write_trades(tmp_path / "trades.csv.gz")
    (tmp_path / "bars.yaml").write_text(DOC_YAML)
    return tmp_path


def count_bars(db: Path, table: str = "bars_1m") -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_run_the_documented_config_writes_bars_and_prints_a_summary(job_dir: Path) -> None:
    result = mdp("run", "--config", "bars.yaml", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    assert count_bars(job_dir / "bars.sqlite") == 5 * 3
    out = result.stdout
    assert "job bars-1m finished" in out
    for line in ("rows in       900", "bars out      15", "late rows     0", "sqlite:bars.sqlite table bars_1m"):
        assert line in out
    assert "rows/s" in out


def test_the_json_summary_matches_the_store(job_dir: Path) -> None:
    result = mdp("run", "-c", "bars.yaml", "--json", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["state"] == "finished"
    assert (summary["rows_in"], summary["bars_out"], summary["rows_written"]) == (900, 15, 15)
    assert summary["locations"] == ["sqlite:bars.sqlite table bars_1m"]


def test_the_console_script_is_installed_next_to_python(job_dir: Path) -> None:
    script = Path(sys.executable).parent / "mdp"
    result = subprocess.run(
        [str(script), "validate", "-c", "bars.yaml"],
        cwd=job_dir,
        env=clean_env(job_dir),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ok: the job is valid" in result.stdout


def test_json_logs_are_one_object_per_line(job_dir: Path) -> None:
    result = mdp("run", "-c", "bars.yaml", "--json", "--debug", "--log-format", "json", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    started = [r for r in records if r["logger"] == "mdp.cli" and "started" in r["message"]]
    assert started == [{**started[0], "level": "info", "message": "job bars-1m started: 3 nodes, mode dag"}]


def test_env_then_set_overrides_reach_the_running_job(job_dir: Path) -> None:
    env = {"MDP_DAG__NODES__STORE__PARAMS__TABLE": "from_env", "MDP_DAG__NODES__BARS__PARAMS__TIMEFRAME": "2m"}
    result = mdp(
        "run", "-c", "bars.yaml", "--set", "dag.nodes.bars.params.timeframe=5m", "--json", cwd=job_dir, env=env
    )
    assert result.returncode == 0, result.stderr
    assert count_bars(job_dir / "bars.sqlite", "from_env") == 3  # one 5-minute bar per symbol: --set won


def test_classic_mode_writes_the_same_bars_as_dag_mode(job_dir: Path) -> None:
    classic = """
job: classic-bars
classic:
  source:
    type: source.replay
    params: {path: trades.csv.gz, columns: {ts_event: ts_ns}, max_out_of_orderness: 5s}
  operators:
    - {type: operator.bars, params: {timeframe: 1m}}
  batcher: {type: operator.buffer, params: {max_items: 8}}
  sink: {type: sink.sqlite, params: {path: classic.sqlite, table: bars_1m}}
"""
    (job_dir / "classic.yaml").write_text(classic)
    assert mdp("run", "-c", "bars.yaml", cwd=job_dir).returncode == 0
    result = mdp("run", "-c", "classic.yaml", "--mode", "classic", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    query = "SELECT * FROM bars_1m ORDER BY symbol, start"
    with sqlite3.connect(job_dir / "bars.sqlite") as a, sqlite3.connect(job_dir / "classic.sqlite") as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_validate_prints_the_graph_and_runs_nothing(job_dir: Path) -> None:
    result = mdp("validate", "--config", "bars.yaml", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "bars-1m (dag mode): 3 nodes, 2 edges",
        "  trades  source.replay -> bars",
        "  bars    operator.bars -> store",
        "  store   sink.sqlite",
        "ok: the job is valid",
    ]
    assert not (job_dir / "bars.sqlite").exists()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "  trades  source.replay -> bars"),
        ("mermaid", 'flowchart LR\n    trades["trades<br/>source.replay"]'),
        ("dot", 'digraph "bars-1m" {'),
    ],
)
def test_graph_draws_the_job_as_text_mermaid_or_dot(job_dir: Path, fmt: str, expected: str) -> None:
    result = mdp("graph", "--config", "bars.yaml", "--format", fmt, cwd=job_dir)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "trades" in result.stdout
    assert "store" in result.stdout


def test_components_lists_every_builtin_id_with_kind_description_and_params(tmp_path: Path) -> None:
    result = mdp("components", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for component_id in BUILTIN_IDS:
        assert component_id in result.stdout
    assert '    timeframe (str, default "1m"): bar length' in result.stdout
    assert "    path (str, required): file to replay" in result.stdout


def test_components_json_has_params_and_defaults(tmp_path: Path) -> None:
    result = mdp("components", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    infos = {c["id"]: c for c in json.loads(result.stdout)["components"]}
    assert sorted(infos) == sorted(b[0] for b in BUILTINS)
    assert set(BUILTIN_IDS) <= set(infos)
    assert all(c["available"] for c in infos.values()), [c["error"] for c in infos.values() if c["error"]]
    assert infos["sink.sqlite"]["kind"] == "sink"
    assert infos["sink.sqlite"]["params"]["path"]["default"] == "mdp.sqlite"
    assert infos["source.synthetic"]["params"]["duration"]["default"] == "1m"


def test_components_lists_an_installed_plugin_and_its_broken_sibling(tmp_path: Path) -> None:
    site = make_plugin(tmp_path / "site")
    result = mdp("components", "--json", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    data = json.loads(result.stdout)
    ids = [c["id"] for c in data["components"]]
    assert "source.countdown" in ids
    assert "operator.square" in ids
    assert "ModuleNotFoundError" in data["plugin_errors"]["broken"]


def test_the_help_says_relative_paths_are_relative_to_the_current_directory(tmp_path: Path) -> None:
    result = mdp("run", "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert "relative to the current directory" in " ".join(result.stdout.split())


def test_only_built_commands_exist() -> None:
    import typer.main

    from mdp.cli import app

    assert sorted(typer.main.get_command(app).commands) == [  # type: ignore[attr-defined]
        "compact",
        "components",
        "dashboard",
        "export",
        "graph",
        "list",
        "run",
        "status",
        "stop",
        "validate",
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_job_gracefully_and_every_bar_is_flushed(tmp_path: Path, signum: int) -> None:
    (tmp_path / "paced.yaml").write_text(
        """
job: paced
dag:
  nodes:
    - {id: trades, type: source.synthetic, params: {symbols: 4, rate: 200, duration: 2h, speed: 120}}
    - {id: bars, type: operator.bars, params: {timeframe: 1m}}
    - {id: store, type: sink.sqlite, params: {path: paced.sqlite, table: bars_1m}}
  edges: [[trades, bars], [bars, store]]
"""
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "-c", "paced.yaml", "--json", "--debug"],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the job to start (a log line), not for a time
            if "job paced started" in line:
                break
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["state"] == "stopped"
    assert summary["rows_in"] < 200 * 7200
    assert summary["rows_written"] == summary["bars_out"]
    assert count_bars(tmp_path / "paced.sqlite") == summary["bars_out"]


def test_the_demo_example_runs_and_show_bars_prints_them(tmp_path: Path) -> None:
    result = mdp("run", "--config", str(REPO / "examples" / "demo.yaml"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_in"] >= 1_000_000
    assert count_bars(tmp_path / "demo.sqlite") == summary["bars_out"] >= 100 * 10
    shown = subprocess.run(
        [sys.executable, str(REPO / "examples" / "show_bars.py"), "demo.sqlite"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"{summary['bars_out']:,} bars, 128 symbols" in shown.stdout
    assert "first 10 bars of" in shown.stdout


def test_the_classic_example_validates(tmp_path: Path) -> None:
    result = mdp("validate", "--config", str(REPO / "examples" / "classic_bars.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "classic-bars (classic mode): 5 nodes, 4 edges" in result.stdout


def test_the_bars_1m_example_runs_on_the_real_trades(shared_data: Path, tmp_path: Path) -> None:
    config = (REPO / "examples" / "bars_1m.yaml").read_text()
    (tmp_path / "bars_1m.yaml").write_text(config.replace("../shared/data/real", str(shared_data)))
    result = mdp("run", "--config", "bars_1m.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows_in"], summary["bars_out"], summary["late_rows"]) == (78_638, 61, 0)
