"""Bad input met through ``mdp run`` on the real Binance trade file: one bad row costs one row, a broken
file keeps what came before it, and a wrong setting fails the job with what to change."""

from __future__ import annotations

import gzip
import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from tests.binance import TRADES_FILE, trades_node
from tests.e2e.test_cli import mdp

#: the shape of examples/bars_1m.yaml, with a dead-letter sink
JOB = """\
job: bad-input
mode: dag
dag:
  nodes:
{trades}    - id: bars
      type: operator.bars
      params: {{timeframe: 1m}}
    - id: store
      type: sink.sqlite
      params: {{path: bars.sqlite, table: bars_1m}}
    - id: rejects
      type: sink.deadletter
      params: {{path: rejects.jsonl}}
  edges:
    - [trades, bars]
    - [bars, store]
    - [trades.deadletter, rejects]
"""


def job(tmp_path: Path, path: str, *, unit: str = "ms", keep_rejects: bool = True, **params: object) -> str:
    extra = "".join(f"\n        {key}: {json.dumps(value)}" for key, value in params.items())
    text = JOB.format(trades=trades_node(path, unit=unit, extra=extra))
    if not keep_rejects:
        text = text.replace("    - id: rejects\n      type: sink.deadletter\n      params: {path: rejects.jsonl}\n", "")
        text = text.replace("    - [trades.deadletter, rejects]\n", "")
    (tmp_path / "job.yaml").write_text(text)
    return "job.yaml"


def lines(shared_data: Path, rows: int | None = None) -> list[bytes]:
    """The header and the first ``rows`` data lines of the real trade file."""
    text = gzip.decompress((shared_data / TRADES_FILE).read_bytes()).rstrip(b"\n").split(b"\n")
    return text if rows is None else text[: rows + 1]


def write(path: Path, rows: list[bytes]) -> str:
    data = b"\n".join(rows) + b"\n"
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path.name


def bars(tmp_path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "bars.sqlite") as conn:
        query = "SELECT symbol, start, open, high, low, close, volume, trades FROM bars_1m ORDER BY 1, 2"
        return conn.execute(query).fetchall()


def failure(stderr: str) -> str:
    """What the run said of its failure: stderr without the start-up notes (this job, with its dead-letter
    sink, takes no checkpoints, and ``mdp run`` says so before it starts)."""
    return "\n".join(line for line in stderr.strip().splitlines() if not line.startswith("note: "))


def rejects(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "rejects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz"])
@pytest.mark.parametrize("column", ["symbol", "price", "trade_ts_ms"])
def test_a_byte_that_is_not_utf8_dead_letters_its_row_and_names_the_column(
    tmp_path: Path, shared_data: Path, name: str, column: str
) -> None:
    rows = lines(shared_data, 5_000)
    at = rows[0].split(b",").index(column.encode())
    fields = rows[100].split(b",")
    fields[at] += b"\xff\xfe"
    rows[100] = b",".join(fields)
    result = mdp("run", "--config", job(tmp_path, write(tmp_path / name, rows)), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_in"] == 4_999
    assert summary["bad_records"] == 1
    [letter] = rejects(tmp_path)
    assert (letter["row"], letter["reason"], letter["column"]) == (99, "undecodable", column)
    assert "\ufffd" in json.loads(str(letter["raw"]))[column]
    assert sum(int(str(bar[-1])) for bar in bars(tmp_path)) == 4_999


def test_a_gzip_file_cut_off_mid_way_fails_naming_it_after_its_rows_bars_are_written(
    tmp_path: Path, shared_data: Path
) -> None:
    packed = (shared_data / TRADES_FILE).read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(packed[: len(packed) // 2])
    # what a careful reader gets from the cut file: every complete line before the break
    readable = zlib.decompressobj(31).decompress(packed[: len(packed) // 2])
    whole = readable[: readable.rfind(b"\n") + 1].rstrip(b"\n").split(b"\n")
    (tmp_path / "good").mkdir()
    write(tmp_path / "good" / "whole.csv.gz", whole)
    assert mdp("run", "--config", job(tmp_path / "good", "whole.csv.gz"), cwd=tmp_path / "good").returncode == 0

    result = mdp("run", "--config", job(tmp_path, "cut.csv.gz"), cwd=tmp_path)
    assert result.returncode == 1
    message = failure(result.stderr)
    assert len(message.splitlines()) == 1
    assert "Traceback" not in message
    assert f"'cut.csv.gz' breaks off at byte {len(packed) // 2:,} of {len(packed) // 2:,}" in message
    assert f"the {len(whole) - 1:,} rows before it (through line {len(whole):,}) were read and went through" in message
    assert bars(tmp_path) == bars(tmp_path / "good")
    assert len(bars(tmp_path)) > 20


@pytest.mark.parametrize(("unit", "looks"), [("ns", "not nanoseconds"), ("s", "not seconds")])
def test_a_wrong_ts_unit_fails_the_job_naming_the_right_one_and_writes_no_1970_bars(
    tmp_path: Path, shared_data: Path, unit: str, looks: str
) -> None:
    result = mdp("run", "--config", job(tmp_path, str(shared_data / TRADES_FILE), unit=unit), cwd=tmp_path)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "78,638 of the 78,638 rows read (100.0%) were bad, more than max_bad_share (50%) allows" in message
    assert "implausible_ts_event 78,638" in message
    assert f"the event times in column 'trade_ts_ms' look like milliseconds, {looks}" in message
    assert (
        "set ts_unit: ms. the 0 good rows went through. if the rows really are bad, raise max_bad_share on the "
        "source (null: never fail for bad rows) (after 0 rows in and 0 bars out" in message
    )
    assert bars(tmp_path) == []
    assert {r["reason"] for r in rejects(tmp_path)} == {"implausible_ts_event"}


def test_with_the_share_allowed_a_wrong_unit_warns_with_the_same_count_as_the_summary(
    tmp_path: Path, shared_data: Path
) -> None:
    config = job(tmp_path, str(shared_data / TRADES_FILE), unit="s", keep_rejects=False, max_bad_share=None)
    result = mdp("run", "--config", config, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bad_records"] == 78_638
    assert "78638 bad trade records (implausible_ts_event 78638) and nothing on its 'deadletter' port" in result.stderr
    assert "78638 of 78638 rows had implausible event times" in result.stderr
    assert "set ts_unit: ms" in result.stderr


def test_rows_in_seconds_or_nanoseconds_inside_a_millisecond_file_are_implausible_not_late(
    tmp_path: Path, shared_data: Path
) -> None:
    rows = lines(shared_data, 5_000)
    at = rows[0].split(b",").index(b"trade_ts_ms")
    for i, scale in [(1, 1_000), (50, 1_000), (2_000, 10**-6), (4_000, 10**-3)]:  # s, s, ns, us
        fields = rows[i].split(b",")
        fields[at] = str(int(int(fields[at]) // scale if scale >= 1 else int(fields[at]) * round(1 / scale))).encode()
        rows[i] = b",".join(fields)
    result = mdp("run", "--config", job(tmp_path, write(tmp_path / "t.csv.gz", rows)), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["late_rows"], summary["bad_records"], summary["rows_in"]) == (0, 4, 4_996)
    assert [(r["row"], r["reason"], r["column"]) for r in rejects(tmp_path)] == [
        (0, "implausible_ts_event", "trade_ts_ms"),
        (49, "implausible_ts_event", "trade_ts_ms"),
        (1_999, "implausible_ts_event", "trade_ts_ms"),
        (3_999, "implausible_ts_event", "trade_ts_ms"),
    ]
    starts = [int(str(bar[1])) for bar in bars(tmp_path)]
    assert min(starts) >= 1_723_161_000 * 10**9  # 2024-08-08: nothing from 1970 or 1829


def test_more_bad_rows_than_max_bad_share_fail_the_job_in_one_paragraph(tmp_path: Path, shared_data: Path) -> None:
    rows = lines(shared_data, 1_000)
    at = rows[0].split(b",").index(b"price")
    for i in range(1, 601):  # 60% of the rows get a price of zero or NaN
        fields = rows[i].split(b",")
        fields[at] = b"0" if i % 2 else b"NaN"
        rows[i] = b",".join(fields)
    name = write(tmp_path / "t.csv.gz", rows)
    result = mdp("run", "--config", job(tmp_path, name), cwd=tmp_path)
    assert result.returncode == 1
    message = failure(result.stderr)
    assert len(message.splitlines()) == 1
    assert message.startswith(
        "error: job 'bad-input' failed: node 'trades' (source.replay at dag.nodes[0]) raised InputError: "
        "source 'trades' (t.csv.gz): 600 of the 1,000 rows read (60.0%) were bad, more than max_bad_share (50%) "
        "allows (top reasons: nan_price 300, non_positive_price 300); so many bad rows usually mean a wrong "
        "setting, not bad data: see which rows and why in the dead letters (connect the source's deadletter "
        "port to a sink.deadletter), then fix params.columns, the units or the file. the 400 good rows went "
        "through. if the rows really are bad, raise max_bad_share on the source (null: never fail for bad rows) "
        "(after 400 rows in and "
    )
    assert len(rejects(tmp_path)) == 600
    assert sum(int(str(bar[-1])) for bar in bars(tmp_path)) == 400  # the good rows' bars are written
    allowed = mdp("run", "--config", job(tmp_path, name, max_bad_share=0.7), cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
