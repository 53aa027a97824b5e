"""Fuzz ``mdp validate`` with config documents: wrong types, huge numbers, deep nesting, aliases, unknown
keys, bad durations and binary bytes. Whatever the document, ``validate`` answers within a bound with
either ``ok`` or one error that names the file or the key, and never a traceback."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mdp.cli import app
from tests.e2e.test_cli import write_trades

#: an answer that names where the problem is: the file, a key path (``dag.nodes[1].params.gap: ...``), a node
#: or an override
NAMED = re.compile(
    r"^error: (config file '|node '|--set|the top level|mode is '|\d+ problems in the config:"
    r"|(\[[^\]]*\]|[^\s:\[]+)+(: | \())"
)
#: seconds one validate may take in-process (they take milliseconds; the bound is for a loaded machine)
BOUND_SECONDS = 10.0

#: key paths of the documented job (a trades → bars → store graph) that the fuzzer overwrites
PATHS: list[tuple[str | int, ...]] = [
    ("job",),
    ("mode",),
    ("runtime",),
    ("runtime", "channel_capacity"),
    ("runtime", "high_watermark_pct"),
    ("dag",),
    ("dag", "nodes"),
    ("dag", "edges"),
    ("dag", "edges", 0),
    ("dag", "nodes", 0, "params", "max_out_of_orderness"),
    ("dag", "nodes", 0, "params", "ts_unit"),
    ("dag", "nodes", 0, "params", "frame_rows"),
    ("dag", "nodes", 0, "params", "columns"),
    ("dag", "nodes", 0, "params", "idle_timeout"),
    ("dag", "nodes", 1, "type"),
    ("dag", "nodes", 1, "id"),
    ("dag", "nodes", 1, "params", "timeframe"),
    ("dag", "nodes", 1, "params", "allowed_lateness"),
    ("dag", "nodes", 1, "params", "max_out_of_orderness"),
    ("dag", "nodes", 1, "params", "origin"),
    ("dag", "nodes", 1, "params", "late_policy"),
    ("dag", "nodes", 1, "params", "window"),
    ("dag", "nodes", 1, "params", "gap"),
    ("dag", "nodes", 2, "params", "table"),
    ("dag", "nodes", 2, "params", "max_delay"),
    ("dag", "nodes", 2, "params", "retries"),
    ("dag", "nodes", 2, "params", "max_batch_rows"),
]

#: the keys above that hold a duration, and those that hold a count
DURATION_PATHS = [
    p
    for p in PATHS
    if p[-1] in {"max_out_of_orderness", "idle_timeout", "allowed_lateness", "gap", "max_delay", "origin"}
]
NUMBER_PATHS = [
    p
    for p in PATHS
    if p[-1]
    in {"channel_capacity", "frame_rows", "retries", "max_batch_rows", "high_watermark_pct", "allowed_lateness"}
]


def base_doc(trades: Path, db: Path) -> dict[str, Any]:
    return {
        "job": "fuzz",
        "mode": "dag",
        "dag": {
            "nodes": [
                {
                    "id": "trades",
                    "type": "source.replay",
                    "params": {
                        "path": str(trades),
                        "columns": {"ts_event": "ts_ns", "symbol": "symbol", "price": "price", "size": "size"},
                        "ts_unit": "ns",
                        "max_out_of_orderness": "5s",
                    },
                },
                {"id": "bars", "type": "operator.bars", "params": {"timeframe": "1m"}},
                {"id": "store", "type": "sink.sqlite", "params": {"path": str(db), "table": "bars_1m"}},
            ],
            "edges": [["trades", "bars"], ["bars", "store"]],
        },
    }


numbers = st.one_of(
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.integers(min_value=0, max_value=1 << 64).map(lambda n: (1 << 63) - 64 + n % 128),
    st.floats(allow_nan=True, allow_infinity=True),
)
durations = st.one_of(
    st.from_regex(r"\A[0-9]{1,25}(ns|us|ms|s|m|h|d)\Z"),  # well formed, of any size
    st.from_regex(r"\A-?[0-9]{1,25}(\.[0-9]{1,3})?\s?(ns|us|ms|s|m|h|d|x|)\Z"),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-3, max_value=1 << 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    durations,
    st.sampled_from(["1m", "5s", "dag", "classic", "operator.bars", "sink.discard", "trades", "${NOPE}", "[1,2]"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """The documented job with a few keys overwritten, deleted or added."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["set", "set", "delete", "unknown", "duration", "number"]))
        path = draw(
            st.sampled_from(DURATION_PATHS if action == "duration" else NUMBER_PATHS if action == "number" else PATHS)
        )
        node: Any = doc
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            last = path[-1]
            if isinstance(node, dict) and isinstance(last, str):
                if action == "delete":
                    node.pop(last, None)
                elif action == "unknown":
                    node[draw(st.text(min_size=1, max_size=10))] = draw(values)
                elif action == "duration":
                    node[last] = draw(durations)
                elif action == "number":
                    node[last] = draw(numbers)
                else:
                    node[last] = draw(values)
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                node[last] = draw(values)
    return doc


def nested(depth: int) -> str:
    return "job: deep\nx: " + "[" * depth + "]" * depth + "\n"


def alias_bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "job: bomb\n" + "\n".join(lines) + "\n"


def raw_texts() -> st.SearchStrategy[bytes]:
    """Documents as bytes that no mapping produces: aliases, deep nesting, binary, broken syntax."""
    return st.one_of(
        st.builds(lambda n, w: alias_bomb(n, w).encode(), st.integers(2, 10), st.integers(2, 12)),
        st.builds(lambda d: nested(d).encode(), st.integers(1, 3000)),
        st.binary(max_size=200),
        st.builds(lambda b: b"job: x\n" + b, st.binary(min_size=1, max_size=50)),
        st.sampled_from(
            [
                b"&a [*a]\n",
                b"a: &a {b: *a}\njob: x\n",
                b"job: x\nn: " + b"9" * 5000 + b"\n",
                b"{job: [unclosed\n",
                b"- just\n- a list\n",
                b"job: x\nmode: dag\ndag: {nodes: []}\n",
                b"\xef\xbb\xbfjob: bom\n",
            ]
        ),
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    write_trades(folder / "trades.csv.gz", minutes=1, symbols=2)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MDP_HOME", str(folder / "home"))  # the runs' job registry
        for name in [n for n in os.environ if n.startswith("MDP_") and n != "MDP_HOME"]:
            env.delenv(name)
        yield folder


def check_answer(exit_code: int, stdout: str, stderr: str, elapsed: float) -> None:
    assert elapsed < BOUND_SECONDS, elapsed
    assert "Traceback" not in stderr + stdout
    if exit_code == 0:
        assert stdout.endswith("ok: the job is valid\n"), stdout
    else:
        assert exit_code == 2, (exit_code, stderr)
        assert NAMED.match(stderr), stderr


def validate_in_process(path: Path, *, then_run: bool = False) -> None:
    """``mdp validate`` on ``path``; with ``then_run``, a job it calls valid must also run without a crash."""
    runner = CliRunner()
    t0 = time.monotonic()
    result = runner.invoke(app, ["validate", "--config", str(path)], catch_exceptions=True)
    elapsed = time.monotonic() - t0
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"validate raised {result.exception!r} for {path.read_bytes()[:300]!r}")
    check_answer(result.exit_code, result.stdout, result.stderr, elapsed)
    if then_run and result.exit_code == 0:
        # what validate accepts, run accepts too: no overflow or type error waits for the first row
        # --fresh: the documents share one store, and a job changed by a mutation refuses the last one's checkpoint
        ran = runner.invoke(app, ["run", "--config", str(path), "--json", "--fresh"], catch_exceptions=True)
        if ran.exception is not None and not isinstance(ran.exception, SystemExit):
            raise AssertionError(f"run raised {ran.exception!r} for {path.read_text()[:500]!r}")
        assert ran.exit_code == 0, (ran.stderr, path.read_text()[:500])


@pytest.mark.timeout(300)  # a hang fails the test instead of stalling the suite
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), as_json=st.booleans())
def test_validate_answers_every_mutated_document(workdir: Path, data: st.DataObject, as_json: bool) -> None:
    doc = data.draw(mutated(base_doc(workdir / "trades.csv.gz", workdir / "bars.sqlite")))
    path = workdir / ("job.json" if as_json else "job.yaml")
    text = json.dumps(doc) if as_json else yaml.safe_dump(doc, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    validate_in_process(path, then_run=True)


SYNTHETIC_PATHS: list[tuple[str | int, ...]] = [
    ("dag", "nodes", 0, "params", key)
    for key in ("rate", "duration", "symbols", "speed", "max_delay", "disorder", "start", "seed", "bad_fraction")
]


def synthetic_doc() -> dict[str, Any]:
    return {
        "job": "fuzz-synthetic",
        "dag": {
            "nodes": [
                {"id": "trades", "type": "source.synthetic", "params": {"symbols": 2, "rate": 100, "duration": "2s"}},
                {"id": "bars", "type": "operator.bars", "params": {"timeframe": "1s"}},
                {"id": "drop", "type": "sink.discard"},
            ],
            "edges": [["trades", "bars"], ["bars", "drop"]],
        },
    }


@pytest.mark.timeout(300)  # a hang fails the test instead of stalling the suite
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_validate_answers_every_mutated_synthetic_job(workdir: Path, data: st.DataObject) -> None:
    # validate only: a paced synthetic feed may be made to run for years
    doc = synthetic_doc()
    for _ in range(data.draw(st.integers(1, 2))):
        key = data.draw(st.sampled_from(SYNTHETIC_PATHS))[-1]
        doc["dag"]["nodes"][0]["params"][key] = data.draw(st.one_of(numbers, durations, values))
    path = workdir / "synthetic.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    validate_in_process(path)


@pytest.mark.timeout(300)  # a hang fails the test instead of stalling the suite
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_texts(), suffix=st.sampled_from([".yaml", ".json"]))
def test_validate_answers_every_raw_document(workdir: Path, raw: bytes, suffix: str) -> None:
    path = workdir / f"raw{suffix}"
    path.write_bytes(raw)
    validate_in_process(path)


@pytest.mark.timeout(300)  # a hang fails the test instead of stalling the suite
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_texts())
def test_validate_answers_in_a_subprocess(workdir: Path, raw: bytes) -> None:
    (workdir / "sub.yaml").write_bytes(raw)
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mdp", "validate", "--config", "sub.yaml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    check_answer(result.returncode, result.stdout, result.stderr, time.monotonic() - t0 - 1.0)
