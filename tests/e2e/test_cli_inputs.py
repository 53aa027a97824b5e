"""Bad inputs meet a clear answer at the command line (issue 14): hostile or mistaken config files,
out-of-range values, job names, dead-end graphs, unreachable stores, the metrics address, failed
starts, exports of a missing table, and the bare ``mdp`` command."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mdp.stores.sqlite import SqliteStore
from tests.e2e.test_cli import clean_env, mdp, write_trades
from tests.unit.test_config_loading import DOC_YAML


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    write_trades(tmp_path / "trades.csv.gz", minutes=2, symbols=2)
    (tmp_path / "bars.yaml").write_text(DOC_YAML)
    return tmp_path


def one_paragraph_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs" document: each level repeats the one below ``width`` times (9**9 leaves)."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "job: bomb\n" + "\n".join(lines) + "\n"


# -- 1. config loading is bounded ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_yaml_alias_bomb_is_refused_in_seconds(tmp_path: Path, command: str) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    t0 = time.monotonic()
    result = mdp(command, "--config", "bomb.yaml", cwd=tmp_path)
    elapsed = time.monotonic() - t0
    err = one_paragraph_error(result)
    assert err.startswith("error: config file 'bomb.yaml' expands to more than 100,000 values"), err
    assert elapsed < 20, elapsed  # the CLI starts in about a second; before, this ran for minutes


def test_a_binary_config_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_bytes(b"job: x\n\x89PNG\r\n\x1a\n\x00\xff\xfe")
    err = one_paragraph_error(mdp("validate", "--config", "job.yaml", cwd=tmp_path))
    assert err.startswith("error: config file 'job.yaml' is not UTF-8 text (byte 0x89 at offset 7)"), err


def test_an_oversized_config_file_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("job: x\n" + "# padding\n" * 120_000)
    err = one_paragraph_error(mdp("validate", "--config", "job.yaml", cwd=tmp_path))
    assert "a job file may hold at most 1,048,576 bytes" in err, err


# -- 2. durations and numbers are bounded, naming the key ----------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            "params: {timeframe: 1m}",
            "params: {timeframe: 1m, max_out_of_orderness: 99999999999999999d}",
            "dag.nodes[1].params.max_out_of_orderness (node 'bars', operator.bars): a duration can be at most 3650d",
        ),
        (
            "max_out_of_orderness: 5s",
            "max_out_of_orderness: 9999999999999999999999999s",
            "dag.nodes[0].params.max_out_of_orderness (node 'trades', source.replay): a duration can be at most",
        ),
        (
            "params: {timeframe: 1m}",
            "params: {timeframe: 1m, allowed_lateness: 100000000000000000000}",
            "dag.nodes[1].params.allowed_lateness (config file 'bad.yaml'): the number has 21 digits and does not "
            "fit in 64 bits",
        ),
        (
            "mode: dag",
            "mode: dag\nruntime: {channel_capacity: .inf}",
            "runtime.channel_capacity (config file 'bad.yaml'): inf is not a usable number",
        ),
    ],
    ids=["operator duration", "source duration", "int beyond 64 bits", "infinite number"],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_out_of_range_value_is_refused_naming_its_key(
    job_dir: Path, command: str, old: str, new: str, key: str
) -> None:
    assert old in DOC_YAML
    (job_dir / "bad.yaml").write_text(DOC_YAML.replace(old, new))
    err = one_paragraph_error(mdp(command, "--config", "bad.yaml", cwd=job_dir))
    assert err.startswith(f"error: {key}"), err
    assert len(err.strip().splitlines()) == 1


# -- 3. --job follows the job-name rule ----------------------------------------------------------


def test_a_job_name_given_with_dash_dash_job_follows_the_files_rule(job_dir: Path) -> None:
    err = one_paragraph_error(mdp("run", "--config", "bars.yaml", "--job", "../../x; rm", cwd=job_dir))
    assert err.startswith("error: --job: job name '../../x; rm' is not allowed; a job name starts with"), err
    assert not (job_dir / "bars.sqlite").exists()  # refused before anything ran
    listed = mdp("list", "--json", cwd=job_dir)
    assert json.loads(listed.stdout) == []


# -- 4. an output that goes nowhere is an error, unless discarded on purpose --------------------

DEAD_END = DOC_YAML.replace("    - [bars, store]\n", "").replace(
    "    - id: store\n      type: sink.sqlite\n      params: {path: bars.sqlite, table: bars_1m}\n", ""
)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_job_whose_bars_go_nowhere_is_refused_naming_the_node(job_dir: Path, command: str) -> None:
    (job_dir / "dead.yaml").write_text(DEAD_END)
    err = one_paragraph_error(mdp(command, "--config", "dead.yaml", cwd=job_dir))
    assert err.startswith(
        "error: dag: node 'bars' (BarsOperator): its output goes nowhere, so its records would be thrown away; "
        "add an edge from bars to a sink (sink.sqlite, sink.parquet, ...), or to a sink.discard node"
    ), err


def test_a_job_that_ends_in_sink_discard_runs_and_counts_what_it_dropped(job_dir: Path) -> None:
    discard = DEAD_END.replace("  edges:\n", "    - {id: drop, type: sink.discard}\n  edges:\n    - [bars, drop]\n")
    (job_dir / "discard.yaml").write_text(discard)
    assert mdp("validate", "--config", "discard.yaml", cwd=job_dir).returncode == 0
    result = mdp("run", "--config", "discard.yaml", "--json", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bars_out"] > 0


# -- 5. validate --connect reaches every store --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_job(dsn: str) -> str:
    return DOC_YAML.replace(
        "type: sink.sqlite\n      params: {path: bars.sqlite, table: bars_1m}",
        f'type: sink.postgres\n      params: {{dsn: "{dsn}", table: bars_1m}}',
    )


def test_validate_connect_passes_for_a_reachable_postgres(job_dir: Path, postgres_dsn: str) -> None:
    (job_dir / "pg.yaml").write_text(postgres_job(postgres_dsn))
    result = mdp("validate", "--config", "pg.yaml", "--connect", cwd=job_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("ok: the job is valid and every store it uses can be reached\n")


def test_validate_connect_names_a_postgres_sink_it_cannot_reach(job_dir: Path, postgres_dsn: str) -> None:
    bad = re.sub(r"port=\d+", f"port={free_port()}", postgres_dsn)
    (job_dir / "pg.yaml").write_text(postgres_job(bad))
    assert mdp("validate", "--config", "pg.yaml", cwd=job_dir).returncode == 0  # without --connect: not checked
    result = mdp("validate", "--config", "pg.yaml", "--connect", cwd=job_dir)
    err = one_paragraph_error(result, code=1)
    assert err.startswith(
        "error: the job is valid, but 1 node cannot reach its store:\n  node 'store' (sink.postgres "
        "at dag.nodes[2]) cannot reach postgres:"
    ), err
    assert "connection refused" in err.lower() or "connect" in err.lower(), err


def test_validate_connect_names_a_sqlite_file_that_is_not_a_database(job_dir: Path) -> None:
    (job_dir / "bars.sqlite").write_text("not a database")
    err = one_paragraph_error(mdp("validate", "--config", "bars.yaml", "--connect", cwd=job_dir), code=1)
    assert "node 'store' (sink.sqlite at dag.nodes[2]) cannot reach sqlite:bars.sqlite" in err, err


# -- 6. and 7. the metrics address, and a start that fails --------------------------------------

PACED = """\
job: paced
mode: dag
dag:
  nodes:
    - id: trades
      type: source.synthetic
      params: {{symbols: 2, rate: 200, duration: 60s, start: "{start}", seed: 1, speed: 1.0}}
    - id: bars
      type: operator.bars
      params: {{timeframe: 1s}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars}}
  edges: [[trades, bars], [bars, store]]
"""


def listening_addresses(port: int) -> list[str]:
    """The local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(addr)
                if len(raw) == 4:
                    found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


@pytest.mark.parametrize(("host_args", "bound"), [((), "127.0.0.1"), (("--metrics-host", "0.0.0.0"), "0.0.0.0")])
def test_the_metrics_endpoint_binds_the_printed_address(tmp_path: Path, host_args: tuple[str, ...], bound: str) -> None:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (tmp_path / "job.yaml").write_text(PACED.format(start=start))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "--config", "job.yaml", "--metrics-port", "0", *host_args],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.fullmatch(r"metrics on http://([0-9.]+):(\d+)/metrics\n", line)
        assert match is not None, line
        assert match.group(1) == bound
        assert listening_addresses(int(match.group(2))) == [bound]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_a_run_whose_metrics_port_is_taken_is_recorded_as_failed(job_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = mdp("run", "--config", "bars.yaml", "--metrics-port", str(port), cwd=job_dir)
    err = one_paragraph_error(result)
    assert err.startswith(f"error: cannot serve metrics on 127.0.0.1 port {port}: "), err
    status = json.loads(mdp("status", "--job", "bars-1m", "--json", cwd=job_dir).stdout)
    assert status["state"] == "failed"
    assert status["error"].startswith(f"cannot serve metrics on 127.0.0.1 port {port}")


# -- 8. export of a table that does not exist ---------------------------------------------------


def test_export_of_a_missing_table_lists_the_tables_there(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "bars.sqlite", tables={"bar": "bars_1m"}):
        pass
    result = mdp("export", "--store", "sqlite:bars.sqlite", "--to", "parquet", "--out", "x.parquet", cwd=tmp_path)
    err = one_paragraph_error(result)
    assert err.startswith(
        "error: --table: sqlite:bars.sqlite has no table 'bars'; its tables are bars_1m. Pass --table"
    ), err
    assert not (tmp_path / "x.parquet").exists()
    ok = mdp(
        "export",
        "--store",
        "sqlite:bars.sqlite",
        "--table",
        "bars_1m",
        "--to",
        "parquet",
        "--out",
        "x.parquet",
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr


def test_export_of_a_missing_postgres_table_lists_the_tables_there(tmp_path: Path, postgres_dsn: str) -> None:
    from mdp.stores.postgres import PostgresStore

    with PostgresStore(postgres_dsn, tables={"bar": "bars_1m"}):
        pass
    result = mdp("export", "--store", f"postgres:{postgres_dsn}", "--to", "parquet", "--out", "x.parquet", cwd=tmp_path)
    err = one_paragraph_error(result)
    assert "has no table 'bars'; its tables are bars_1m. Pass --table" in err, err


# -- 9. --version, -h and bare mdp --------------------------------------------------------------


def test_version_help_and_bare_mdp_exit_0(tmp_path: Path) -> None:
    from mdp import __version__

    version = mdp("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"mdp {__version__}\n")
    for args in (("-h",), ("--help",), ()):
        result = mdp(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage: mdp" in result.stdout
        assert "validate" in result.stdout
    sub = mdp("validate", "-h", cwd=tmp_path)
    assert sub.returncode == 0
    assert "--connect" in sub.stdout


# -- 10. progress on a terminal -----------------------------------------------------------------


def test_progress_on_a_terminal_shows_the_percentage_and_the_eta(tmp_path: Path) -> None:
    import pty

    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # 2 symbols at 200 trades/s for 4 s of event time, paced in real time: a known total of 800 rows
    (tmp_path / "job.yaml").write_text(PACED.format(start=start).replace("duration: 60s", "duration: 4s"))
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdp", "run", "--config", "job.yaml"],
        cwd=tmp_path,
        env=clean_env(tmp_path, {"COLUMNS": "200", "TERM": "xterm"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    screen = b""
    try:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the run ended and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(controller)
        assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert re.search(r"\b\d{1,3}%", text), text[-2000:]
    assert re.search(r"eta \d+:\d\d:\d\d", text), text[-2000:]
