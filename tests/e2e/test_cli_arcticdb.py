"""ArcticDB end to end (issue 24): a job writes bars to it twice, one row per bar; read back by URI.

The real Binance trades go to 1-minute bars in an ArcticDB library on LMDB (a temporary folder), once
into SQLite beside it; the job runs twice into ArcticDB and the bars equal SQLite's, row for row.
``mdp.read_bars`` and ``mdp export`` take the ArcticDB URI; ``source.arcticdb`` feeds
``operator.bars_of_bars``, and its 5-minute bars equal those of the same job reading the SQLite bars.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import mdp
from mdp.stores.arcticdb import ArcticStore, arctic
from tests.binance import TRADES_FILE, trades_node
from tests.e2e.test_cli import mdp as run_mdp

pytestmark = pytest.mark.services

JOB = """\
job: bars-arctic
mode: dag
dag:
  nodes:
{trades}    - id: bars
      type: operator.bars
      params: {{timeframe: 1m}}
    - id: store
      type: {sink}
      params: {params}
  edges:
    - [trades, bars]
    - [bars, store]
"""

REBAR = """\
job: rebar
mode: dag
dag:
  nodes:
    - id: bars
      type: {source}
      params: {params}
    - id: rebar
      type: operator.bars_of_bars
      params: {{timeframe: 5m}}
    - id: store
      type: sink.sqlite
      params: {{path: {out}, table: bars_5m}}
  edges:
    - [bars, rebar]
    - [rebar, store]
"""


def _job(folder: Path, data: Path, name: str, sink: str, params: str) -> str:
    text = JOB.format(trades=trades_node(data / TRADES_FILE), sink=sink, params=params)
    (folder / name).write_text(text)
    return name


def test_a_job_writing_twice_to_arcticdb_leaves_one_row_per_bar(tmp_path: Path, shared_data: Path) -> None:
    uri = f"lmdb://{tmp_path / 'arctic'}"
    arctic_job = _job(tmp_path, shared_data, "arctic.yaml", "sink.arcticdb", f"{{uri: '{uri}', table: bars_1m}}")
    sqlite = _job(tmp_path, shared_data, "sqlite.yaml", "sink.sqlite", "{path: bars.sqlite, table: bars_1m}")
    for _ in range(2):
        done = run_mdp("run", "-c", arctic_job, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert run_mdp("run", "-c", sqlite, cwd=tmp_path).returncode == 0

    expected = mdp.read_bars(tmp_path / "bars.sqlite")
    assert expected.height == 61
    from_uri = mdp.read_bars(uri)  # a plain lmdb:// URI names an ArcticDB store (library mdp, table bars_1m)
    assert_frame_equal(from_uri, expected, check_exact=True)
    with ArcticStore(uri, tables={"bar": "bars_1m"}, read_only=True) as store:
        assert store.read("bar").select("symbol", "timeframe", "start").is_unique().all()

    # the layout a notebook sees: one ArcticDB symbol per table, indexed by bar start
    raw = arctic(uri).get_library("mdp").read("bars_1m", output_format="polars").data
    assert raw.height == 61
    assert set(expected.columns) <= set(raw.columns)

    out = tmp_path / "export.parquet"
    done = run_mdp(
        "export",
        "--store",
        f"arcticdb:{uri}#mdp",
        "--table",
        "bars_1m",
        "--kind",
        "bar",
        "--to",
        "parquet",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert_frame_equal(pl.read_parquet(out), expected, check_exact=True)


def test_bars_of_bars_from_arcticdb_equal_those_from_sqlite(tmp_path: Path, shared_data: Path) -> None:
    uri = f"lmdb://{tmp_path / 'arctic'}"
    for name, sink, params in [
        ("a.yaml", "sink.arcticdb", f"{{uri: '{uri}', table: bars_1m}}"),
        ("s.yaml", "sink.sqlite", "{path: bars.sqlite, table: bars_1m}"),
    ]:
        assert run_mdp("run", "-c", _job(tmp_path, shared_data, name, sink, params), cwd=tmp_path).returncode == 0
    for name, source, params, out in [
        ("ra.yaml", "source.arcticdb", f"{{uri: '{uri}', table: bars_1m}}", "from_arctic.sqlite"),
        ("rs.yaml", "source.store", "{store: sqlite, path: bars.sqlite, table: bars_1m}", "from_sqlite.sqlite"),
    ]:
        (tmp_path / name).write_text(REBAR.format(source=source, params=params, out=out))
        done = run_mdp("run", "-c", name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    got = mdp.read_bars(tmp_path / "from_arctic.sqlite", "bars_5m")
    want = mdp.read_bars(tmp_path / "from_sqlite.sqlite", "bars_5m")
    assert want.height > 0
    assert set(want.get_column("timeframe")) == {"5m"}
    assert_frame_equal(got, want, check_exact=True)
