"""The bounds a job file is read with: sizes and aliases, numbers, durations, and outputs that go nowhere."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mdp.config import JobConfig, build_dag
from mdp.config.loading import MAX_DEPTH, check_document, format_path, load_document
from mdp.durations import MAX_DURATION_NS, NS, parse_duration, seconds_or_duration
from mdp.errors import ConfigError
from mdp.operators.discard import Discard
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSource, run_graph
from tests.e2e.test_cli_inputs import alias_bomb


def test_an_alias_bomb_is_refused_in_milliseconds(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"expands to more than 100,000 values"):
        load_document(tmp_path / "bomb.yaml")
    assert time.monotonic() - t0 < 1.0


def test_aliases_a_job_really_uses_still_work(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(
        "job: shared\ncommon: &cols {ts_event: ts, symbol: s, price: p, size: q}\nx: [*cols, *cols, *cols]\n"
    )
    doc = load_document(tmp_path / "job.yaml")
    assert doc["x"][2]["price"] == "p"


def test_an_alias_that_contains_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("job: x\na: &a {b: *a}\n")
    with pytest.raises(
        ConfigError, match=r"^a\.b \(config file '.*job.yaml'\) is a YAML alias of a value that contains it"
    ):
        load_document(tmp_path / "job.yaml")


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_deep_nesting_is_refused_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"job{suffix}"
    path.write_text('{"job": "x", "deep": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(ConfigError, match=r"nested"):
        load_document(path)


def test_the_depth_bound_names_the_key_path() -> None:
    doc: dict[str, Any] = {"job": "x"}
    node = doc
    for _ in range(MAX_DEPTH + 1):
        node["k"] = {}
        node = node["k"]
    with pytest.raises(ConfigError, match=rf"^k(\.k)+ \(the config\) is nested more than {MAX_DEPTH} levels deep"):
        check_document(doc)


@pytest.mark.parametrize(
    ("value", "ok"), [((1 << 63) - 1, True), (-(1 << 63), True), (1 << 63, False), (math.inf, False), (math.nan, False)]
)
def test_numbers_must_fit_in_64_bits_and_be_finite(value: float, ok: bool) -> None:
    doc = {"runtime": {"channel_capacity": value}}
    if ok:
        check_document(doc)
    else:
        with pytest.raises(ConfigError, match=r"^runtime\.channel_capacity \(the config\): "):
            check_document(doc)


def test_a_key_path_quotes_keys_that_are_not_plain() -> None:
    assert format_path(("dag", "nodes", 1, "params", "a b")) == "dag.nodes[1].params['a b']"
    assert format_path((" ",)) == "[' ']"


@pytest.mark.parametrize(
    "value", ["3651d", "99999999999999999d", "1" * 400 + "s", MAX_DURATION_NS + 1, "87601h", "5256001m"]
)
def test_a_duration_longer_than_ten_years_is_refused(value: str | int) -> None:
    with pytest.raises(ConfigError, match=r"^a duration can be at most 3650d \(ten years\), got "):
        parse_duration(value)


def test_ten_years_is_the_longest_duration() -> None:
    assert parse_duration("3650d") == MAX_DURATION_NS == 3650 * NS["d"]
    assert parse_duration(MAX_DURATION_NS) == MAX_DURATION_NS
    with pytest.raises(ConfigError, match="at most 3650d"):
        seconds_or_duration(math.nan)
    with pytest.raises(ConfigError, match="at most 3650d"):
        seconds_or_duration(1e300)


def job_with(nodes: list[dict[str, Any]], edges: list[list[str]]) -> JobConfig:
    return JobConfig.from_dict({"job": "t", "dag": {"nodes": nodes, "edges": edges}})


SOURCE = {"id": "src", "type": "source.synthetic", "params": {"symbols": 2, "duration": "10s", "seed": 1}}


def test_a_router_must_use_every_port_it_declares() -> None:
    router = {
        "id": "split",
        "type": "operator.router",
        "params": {"column": "symbol", "routes": {"a": ["S0"], "b": ["S1"]}, "unmatched": "error"},
    }
    drop = {"id": "drop", "type": "sink.discard"}
    with pytest.raises(ConfigError, match=r"node 'split' \(Router\): its output port 'b' goes nowhere"):
        build_dag(job_with([SOURCE, router, drop], [["src", "split"], ["split.a", "drop"]]))
    drop_b = {"id": "drop_b", "type": "sink.discard"}
    build_dag(job_with([SOURCE, router, drop, drop_b], [["src", "split"], ["split.a", "drop"], ["split.b", "drop_b"]]))


def test_a_side_port_may_stay_open_but_the_main_output_may_not() -> None:
    bars = {"id": "bars", "type": "operator.bars", "params": {"timeframe": "1m"}}
    drop = {"id": "drop", "type": "sink.discard"}
    build_dag(job_with([SOURCE, bars, drop], [["src", "bars"], ["bars", "drop"]]))  # late port unused: fine
    with pytest.raises(ConfigError, match=r"node 'bars' \(BarsOperator\): its output goes nowhere"):
        build_dag(job_with([SOURCE, bars, drop], [["src", "bars"], ["bars.late", "drop"]]))


def test_sink_discard_counts_what_it_drops() -> None:
    frames = [pl.DataFrame({"x": [1, 2, 3]}), pl.DataFrame({"x": [4]})]
    sink = Discard()
    dag = Dag().add_node(Node("src", ListSource(frames))).add_node(Node("drop", sink)).add_edge("src", "drop")
    asyncio.run(run_graph(dag))
    assert sink.stats() == {"discarded_rows": 4, "discarded_frames": 2}
