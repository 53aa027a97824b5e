"""``mdp`` exit codes and error messages: one clear paragraph naming the key or node, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli import mdp, write_trades
from tests.unit.test_config_loading import DOC_YAML


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    write_trades(tmp_path / "trades.csv.gz")
    (tmp_path / "bars.yaml").write_text(DOC_YAML)
    return tmp_path


def broken(job_dir: Path, old: str, new: str) -> str:
    """Write bad.yaml: the documented job with ``old`` replaced by ``new``."""
    assert old in DOC_YAML
    (job_dir / "bad.yaml").write_text(DOC_YAML.replace(old, new))
    return "bad.yaml"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "params: {timeframe: 1m}",
            "params: {timeframe: 1m, colour: red}",
            "error: dag.nodes[1].params.colour (node 'bars', operator.bars): unknown key 'colour'; "
            "allowed keys here: allowed_lateness, calendar, eligibility, fill_empty, gap, late_policy, "
            "max_out_of_orderness, origin, step, timeframe, watermark, window",
        ),
        (
            "type: operator.bars",
            "type: operator.barz",
            "error: dag.nodes[1].type (node 'bars'): unknown component type 'operator.barz'; "
            "did you mean 'operator.bars'",
        ),
        (
            "ts_event: ts_ns",
            "ts_event: ts_nanos",
            "error: node 'trades' (source.replay at dag.nodes[0]) cannot start: column 'ts_nanos' (mapped to "
            "'ts_event') is not in trades.csv.gz",
        ),
        (
            "- [bars, store]",
            "- [bars, stor]",
            "error: dag.edges[1]: edge bars -> stor goes to 'stor', which is not a node (did you mean 'store'?); "
            "the nodes are trades, bars, store",
        ),
        (
            "path: trades.csv.gz",
            "path: missing.csv.gz",
            "error: node 'trades' (source.replay at dag.nodes[0]) cannot start: replay file 'missing.csv.gz' "
            "does not exist",
        ),
    ],
    ids=["unknown key", "unknown component id", "wrong column name", "edge to a missing node", "missing data file"],
)
def test_a_bad_config_exits_2_with_one_clear_paragraph(job_dir: Path, old: str, new: str, expected: str) -> None:
    result = mdp("run", "--config", broken(job_dir, old, new), cwd=job_dir)
    assert result.returncode == 2
    assert result.stderr.startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_a_missing_config_file_exits_2_naming_it(tmp_path: Path) -> None:
    result = mdp("run", "--config", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: config file 'nope.yaml' does not exist (relative to the current directory")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["validate", "graph"])
def test_validate_and_graph_report_config_errors_the_same_way(job_dir: Path, command: str) -> None:
    result = mdp(command, "-c", broken(job_dir, "- [bars, store]", "- [bars, stor]"), cwd=job_dir)
    assert result.returncode == 2
    assert result.stderr.startswith("error: dag.edges[1]: edge bars -> stor goes to 'stor'")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--mode", "classic"], {}, "error: mode is 'classic' but the config has no 'classic' section"),
        (["--set", "dag.nodes.bar.params.timeframe=5m"], {}, "no entry with id 'bar' (did you mean 'bars'"),
        (["--set", "dag.nodes.bars.params.timeframe=7q"], {}, "dag.nodes[1].params.timeframe (node 'bars'"),
        ([], {"MDP_RUNTIME__CHANEL_CAPACITY": "5"}, "set by environment variable MDP_RUNTIME__CHANEL_CAPACITY"),
        (["--set", "dag.nodes.store.params.path=${NO_SUCH_DIR}/x.sqlite"], {}, "variable 'NO_SUCH_DIR' is not set"),
        (["--set", "runtime.max_concurrency=2"], {}, "error: runtime: the graph has 3 nodes but max_concurrency is 2"),
    ],
)
def test_bad_overrides_exit_2_naming_the_override(
    job_dir: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = mdp("run", "-c", "bars.yaml", *args, cwd=job_dir, env=env)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_usage_error_exits_2(job_dir: Path) -> None:
    assert mdp("run", "-c", "bars.yaml", "--mode", "linear", cwd=job_dir).returncode == 2
    assert mdp("run", cwd=job_dir).returncode == 2


def test_debug_adds_the_traceback(job_dir: Path) -> None:
    result = mdp(
        "run", "--config", broken(job_dir, "type: operator.bars", "type: operator.barz"), "--debug", cwd=job_dir
    )
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: dag.nodes[1].type (node 'bars')")


def test_a_node_that_fails_mid_run_exits_1_naming_the_node_and_the_cause(job_dir: Path) -> None:
    (job_dir / "flaky.py").write_text(
        "def explode(frame):\n    raise ValueError(f'cannot handle {frame.height} rows')\n"
    )
    config = DOC_YAML.replace(
        "    - id: bars\n",
        "    - id: check\n      type: operator.map\n      params: {function: 'flaky:explode'}\n    - id: bars\n",
    ).replace("- [trades, bars]", "- [trades, check]\n    - [check, bars]")
    (job_dir / "flaky.yaml").write_text(config)
    result = mdp("run", "-c", "flaky.yaml", cwd=job_dir, env={"PYTHONPATH": str(job_dir)})
    assert result.returncode == 1
    assert result.stderr.startswith(
        "error: job 'bars-1m' failed: node 'check' (operator.map at dag.nodes[1]) raised ValueError: "
        "cannot handle 900 rows"
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_function_import_is_a_config_error_naming_the_param(job_dir: Path) -> None:
    config = DOC_YAML.replace(
        "params: {timeframe: 1m}",
        "params: {timeframe: 1m}\n    - id: m\n      type: operator.map\n      params: {function: 'nowhere:f'}",
    )
    (job_dir / "imp.yaml").write_text(config)
    result = mdp("validate", "-c", "imp.yaml", cwd=job_dir)
    assert result.returncode == 2
    assert "dag.nodes[2].params.function (node 'm', operator.map): cannot import 'nowhere:f'" in result.stderr
