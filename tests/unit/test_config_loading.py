"""Job files: YAML and JSON, unknown keys rejected with their key path, overrides in order, ${VAR}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdp.config import JobConfig, RuntimeMode, UnifiedRuntimeSettings, config_from_document, load_config
from mdp.errors import ConfigError

DOC_YAML = """\
job: bars-1m
mode: dag
dag:
  nodes:
    - id: trades
      type: source.replay
      params:
        path: trades.csv.gz
        columns: {ts_event: ts_ns, symbol: symbol, price: price, size: size}
        ts_unit: ns
        max_out_of_orderness: 5s
    - id: bars
      type: operator.bars
      params: {timeframe: 1m}
    - id: store
      type: sink.sqlite
      params: {path: bars.sqlite, table: bars_1m}
  edges:
    - [trades, bars]
    - [bars, store]
"""


def doc(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "job": "j",
        "dag": {
            "nodes": [
                {"id": "trades", "type": "source.replay", "params": {"path": "a.csv"}},
                {"id": "store", "type": "sink.sqlite", "params": {}},
            ],
            "edges": [["trades", "store"]],
        },
    }
    base.update(extra)
    return base


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_documented_job_file_loads_as_written(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "bars.yaml", DOC_YAML), environ={})
    assert cfg.job == "bars-1m"
    assert cfg.mode is RuntimeMode.dag
    assert cfg.dag is not None
    assert [n.id for n in cfg.dag.nodes] == ["trades", "bars", "store"]
    assert cfg.dag.nodes[0].params["max_out_of_orderness"] == "5s"
    assert [(e.from_, e.to, e.port) for e in cfg.dag.edges] == [("trades", "bars", "out"), ("bars", "store", "out")]


def test_a_json_job_file_loads_like_the_yaml_one(tmp_path: Path) -> None:
    from_yaml = load_config(write(tmp_path, "a.yaml", DOC_YAML), environ={})
    as_json = json.dumps(from_yaml.model_dump(mode="json", by_alias=True))
    assert load_config(write(tmp_path, "a.json", as_json), environ={}) == from_yaml


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.update(colour=1), "colour"),
        (lambda d: d.update(runtime={"channel_capacityy": 3}), "runtime.channel_capacityy"),
        (lambda d: d["dag"].update(edgez=[]), "dag.edgez"),
        (lambda d: d["dag"]["nodes"][1].update(param={}), "dag.nodes[1].param"),
        (lambda d: d["dag"]["edges"].append({"from": "trades", "to": "store", "prt": "x"}), "dag.edges[1].prt"),
        (
            lambda d: d.update(classic={"source": {"type": "s", "extra": 1}, "sink": {"type": "k"}}),
            "classic.source.extra",
        ),
        (
            lambda d: d.update(classic={"source": {"type": "s"}, "operators": [{"tpye": "x"}], "sink": {"type": "k"}}),
            "classic.operators[0].tpye",
        ),
    ],
)
def test_unknown_keys_are_rejected_at_every_level_with_their_key_path(change: Any, path: str) -> None:
    d = doc()
    change(d)
    with pytest.raises(ConfigError, match="unknown key") as info:
        config_from_document(d, environ={})
    assert path in str(info.value)


def test_an_unknown_key_suggests_the_close_name_and_lists_the_allowed_ones() -> None:
    d = doc()
    d["dag"]["nodes"][0]["typ"] = d["dag"]["nodes"][0].pop("type")
    with pytest.raises(ConfigError) as info:
        config_from_document(d, environ={})
    message = str(info.value)
    assert "dag.nodes[0].typ: unknown key 'typ' (did you mean 'type'?)" in message
    assert "allowed keys here: id, params, type" in message
    assert "dag.nodes[0].type: required key is missing" in message


def test_a_wrong_value_names_the_key_the_value_and_what_was_expected() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_document(doc(mode="dg"), environ={})
    assert str(info.value) == "mode: Input should be 'classic' or 'dag'; got 'dg'"


def test_edges_are_pairs_ports_or_mappings() -> None:
    d = doc()
    d["dag"]["edges"] = [["trades", "store"], ["trades.late", "store"], {"from": "trades", "to": "store", "port": "x"}]
    cfg = config_from_document(d, environ={})
    assert cfg.dag is not None
    assert [(e.from_, e.port) for e in cfg.dag.edges] == [("trades", "out"), ("trades", "late"), ("trades", "x")]


def test_a_malformed_edge_names_its_position() -> None:
    d = doc()
    d["dag"]["edges"] = [["trades", "store"], ["trades"]]
    with pytest.raises(ConfigError, match=r"dag\.edges\[1\]: an edge is written \[from, to\]"):
        config_from_document(d, environ={})


def test_node_ids_must_be_plain_names() -> None:
    d = doc()
    d["dag"]["nodes"][0]["id"] = "my node"
    with pytest.raises(ConfigError, match=r"dag\.nodes\[0\]\.id: String should match pattern"):
        config_from_document(d, environ={})


def test_env_overrides_apply_first_and_set_overrides_win() -> None:
    env = {"MDP_RUNTIME__CHANNEL_CAPACITY": "10", "MDP_JOB": "from-env", "MDP_RUNTIME__MAX_CONCURRENCY": "7"}
    cfg = config_from_document(doc(), environ=env, overrides=["runtime.channel_capacity=20"])
    assert cfg.runtime.channel_capacity == 20
    assert cfg.runtime.max_concurrency == 7
    assert cfg.job == "from-env"


def test_mdp_mode_in_the_environment_picks_the_mode() -> None:
    assert config_from_document(doc(), environ={"MDP_MODE": "classic"}).mode is RuntimeMode.classic


def test_env_overrides_reach_node_params_by_node_id_or_position_in_any_case() -> None:
    env = {"MDP_DAG__NODES__TRADES__PARAMS__PATH": "b.csv", "MDP_DAG__NODES__1__PARAMS__TABLE": "t"}
    cfg = config_from_document(doc(), environ=env)
    assert cfg.dag is not None
    assert cfg.dag.nodes[0].params["path"] == "b.csv"
    assert cfg.dag.nodes[1].params["table"] == "t"


def test_mdp_variables_that_are_not_job_keys_are_ignored() -> None:
    env = {"MDP_HOME": "/tmp/x", "MDP_REQUIRE_SERVICES": "1", "MDP_TEST_PG_HOST": "h", "OTHER": "1"}
    assert config_from_document(doc(), environ=env) == config_from_document(doc(), environ={})


def test_a_bad_env_override_is_named_in_the_error() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_document(doc(), environ={"MDP_RUNTIME__CHANEL_CAPACITY": "5"})
    message = str(info.value)
    assert "runtime.chanel_capacity (set by environment variable MDP_RUNTIME__CHANEL_CAPACITY)" in message
    assert "did you mean 'channel_capacity'" in message


def test_set_takes_dotted_paths_list_positions_and_node_ids() -> None:
    cfg = config_from_document(
        doc(),
        environ={},
        overrides=[
            "dag.nodes.trades.params.path=x.csv",
            "dag.nodes[1].params.table=t1",
            "dag.nodes.1.params.path=db.sqlite",
        ],
    )
    assert cfg.dag is not None
    assert cfg.dag.nodes[0].params == {"path": "x.csv"}
    assert cfg.dag.nodes[1].params == {"table": "t1", "path": "db.sqlite"}


def test_set_values_may_be_lists_mappings_or_null() -> None:
    cfg = config_from_document(
        doc(),
        environ={},
        overrides=[
            "dag.edges=[[trades, store]]",
            "dag.nodes.trades.params.columns={size: qty}",
            "runtime.max_concurrency=null",
        ],
    )
    assert cfg.dag is not None
    assert cfg.dag.nodes[0].params["columns"] == {"size": "qty"}
    assert cfg.runtime.max_concurrency is None


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("dag.nodes.trade.params.path=x", "no entry with id 'trade' (did you mean 'trades'"),
        ("dag.nodes[5].params.path=x", "dag.nodes has 2 entries, so there is no entry [5]"),
        ("no-equals-sign", "expected key.path=value"),
        ("dag..nodes=1", "cannot read the key path"),
        ("job.name=x", "job holds 'j', not a mapping or list"),
    ],
)
def test_a_bad_set_override_says_what_is_wrong(assignment: str, expected: str) -> None:
    with pytest.raises(ConfigError, match="--set") as info:
        config_from_document(doc(), environ={}, overrides=[assignment])
    assert expected in str(info.value)


def test_env_variables_are_interpolated_into_strings_with_defaults_and_escapes() -> None:
    d = doc()
    d["dag"]["nodes"][0]["params"]["path"] = "${DATA_DIR}/trades-${DAY:-2024-08-09}.csv"
    d["dag"]["nodes"][1]["params"]["table"] = "$${literal}"
    cfg = config_from_document(d, environ={"DATA_DIR": "/data"})
    assert cfg.dag is not None
    assert cfg.dag.nodes[0].params["path"] == "/data/trades-2024-08-09.csv"
    assert cfg.dag.nodes[1].params["table"] == "${literal}"


def test_an_unset_variable_names_the_key_and_the_variable() -> None:
    d = doc()
    d["dag"]["nodes"][0]["params"]["path"] = "${NOT_SET_ANYWHERE}/a.csv"
    with pytest.raises(ConfigError) as info:
        config_from_document(d, environ={})
    assert "dag.nodes[0].params.path: environment variable 'NOT_SET_ANYWHERE' is not set" in str(info.value)


def test_a_missing_file_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"config file 'nope.yaml' does not exist \(relative to the current directory"
    ):
        load_config("nope.yaml", environ={})


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not valid YAML: .* at line 2"):
        load_config(write(tmp_path, "bad.yaml", "job: a\n  mode: [dag\n"), environ={})


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not valid JSON: .* at line 1"):
        load_config(write(tmp_path, "bad.json", '{"job": }'), environ={})


def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "list.yaml", "- a\n- b\n"), environ={})


def test_the_job_name_defaults_to_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "nightly bars.yaml", "dag: {nodes: [{id: a, type: source.replay}]}\n")
    assert load_config(path, environ={}).job == "nightly-bars"


def test_a_file_with_only_a_classic_section_is_classic_mode() -> None:
    d = {"classic": {"source": {"type": "source.synthetic"}, "sink": {"type": "sink.sqlite"}}}
    assert config_from_document(d, environ={}).mode is RuntimeMode.classic
    assert config_from_document(d, environ={}, mode="dag").mode is RuntimeMode.dag


def test_the_runtime_section_becomes_the_run_config() -> None:
    cfg = config_from_document(doc(runtime={"channel_capacity": 64, "high_watermark_pct": 0.9}), environ={})
    run_config = cfg.runtime.to_run_config()
    assert (run_config.channel_capacity, run_config.high_watermark_pct, run_config.low_watermark_pct) == (64, 0.9, 0.25)
    with pytest.raises(ConfigError, match=r"low_watermark_pct .* must be below high_watermark_pct"):
        config_from_document(doc(runtime={"low_watermark_pct": 0.8, "high_watermark_pct": 0.5}), environ={})


def test_settings_classmethods_load_files_dicts_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "bars.yaml", DOC_YAML)
    monkeypatch.setenv("MDP_JOB", "env-job")
    from_file = UnifiedRuntimeSettings.from_file(path, overrides=["dag.nodes.bars.params.timeframe=5m"])
    assert from_file.job == "env-job"
    assert from_file.dag is not None
    assert from_file.dag.nodes[1].params["timeframe"] == "5m"
    assert JobConfig.from_dict(doc()).job == "j"
    assert JobConfig.from_dict(doc(), env=True).job == "env-job"
    assert JobConfig.from_env(fallback=JobConfig.from_dict(doc())).job == "env-job"
