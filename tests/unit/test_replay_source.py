"""ReplaySource: CSV, gzip CSV and Parquet files replayed as canonical trade or quote frames with watermarks.

Bad rows and the dead-letter port are tested in test_validation.py; here only where they touch parsing.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.clock import ManualClock
from mdp.errors import ConfigError, DagValidationError, InputError, NodeError, SourceError
from mdp.operators.bars import BarsOperator
from mdp.records import END_OF_TIME, QUOTE_SCHEMA, TRADE_SCHEMA
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import NO_WATERMARK, Context, Sink
from mdp.runtime.runtime import DagRuntime, RunConfig
from mdp.sources.replay import ReplayParams, ReplaySource
from mdp.testing import ListSink, run_graph, settle, wait_until

T0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z
MAPPING = {"ts_event": "ts_ns", "symbol": "{venue}:{sym}", "price": "px", "size": "qty"}


class RecordingSink(Sink):
    """Keep frames and watermarks in arrival order, and count rows older than the watermark in force."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.watermarks: list[int] = []
        self.late = 0

    async def on_item(self, item: Any, ctx: Context) -> None:
        self.frames.append(item)
        self.late += int((item.get_column("ts_event") < ctx.watermark).sum()) if ctx.watermark > NO_WATERMARK else 0

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        self.watermarks.append(watermark)

    @property
    def frame(self) -> pl.DataFrame:
        return pl.concat(self.frames) if self.frames else pl.DataFrame(schema=TRADE_SCHEMA)


def trades_frame(n: int = 50, *, disorder_ms: int = 0, seed: int = 1) -> pl.DataFrame:
    """A small trade file: event times 10 ms apart (optionally jittered back), ties, two venues."""
    rng = np.random.default_rng(seed)
    ts = T0 + (np.arange(n) // 2) * 10_000_000  # pairs share a timestamp
    if disorder_ms:
        ts = ts - rng.integers(0, disorder_ms + 1, n) * 1_000_000
    return pl.DataFrame(
        {
            "ts_ns": ts,
            "venue": rng.choice(["binance-spot", "binance-usdm"], n),
            "sym": rng.choice(["BTCUSDT", "ETHUSDT"], n),
            "px": np.round(100 + rng.standard_normal(n), 2),
            "qty": rng.integers(1, 100, n) / 10,
            "trade_id": [str(1000 + i) for i in range(n)],
        }
    )


def write(frame: pl.DataFrame, path: Path) -> Path:
    if path.name.endswith(".parquet"):
        frame.write_parquet(path)
    elif path.name.endswith(".gz"):
        with gzip.open(path, "wb") as f:
            frame.write_csv(f)
    else:
        frame.write_csv(path)
    return path


async def replay(source: ReplaySource, sink: Sink | None = None, config: RunConfig | None = None) -> Any:
    sink = sink or ListSink()
    dag = Dag()
    dag.add_node(Node("replay", source)).add_node(Node("sink", sink)).add_edge("replay", "sink")
    await run_graph(dag, config)
    return sink


async def replay_with_deadletters(source: ReplaySource) -> tuple[RecordingSink, ListSink]:
    """Run ``source`` with its out port to a RecordingSink and its deadletter port to a ListSink."""
    sink, dead = RecordingSink(), ListSink()
    dag = Dag().add_node(Node("replay", source)).add_node(Node("sink", sink)).add_node(Node("dead", dead))
    dag.add_edge("replay", "sink").add_edge("replay", "dead", port="deadletter")
    await run_graph(dag)
    return sink, dead


async def source_error(source: ReplaySource) -> str:
    with pytest.raises(NodeError) as info:
        await replay(source)
    assert isinstance(info.value.cause, SourceError)
    return str(info.value.cause)


async def test_a_csv_file_replays_as_canonical_trade_frames(tmp_path: Path) -> None:
    data = trades_frame()
    path = write(data, tmp_path / "t.csv")
    sink = await replay(ReplaySource(path=path, columns=MAPPING))
    out = sink.frame
    assert out.schema == pl.Schema(TRADE_SCHEMA)
    assert out["ts_event"].to_list() == data["ts_ns"].to_list()
    assert out["price"].to_list() == data["px"].to_list()
    assert out["size"].to_list() == data["qty"].to_list()
    assert out["symbol"].to_list() == (data["venue"] + ":" + data["sym"]).to_list()
    assert out["trade_id"].to_list() == data["trade_id"].to_list()
    assert sink.closed


@pytest.mark.parametrize("name", ["t.csv.gz", "t.parquet"])
async def test_gzip_csv_and_parquet_give_the_same_rows_as_plain_csv(tmp_path: Path, name: str) -> None:
    data = trades_frame(300)
    plain = (await replay(ReplaySource(path=write(data, tmp_path / "t.csv"), columns=MAPPING))).frame
    other = (await replay(ReplaySource(path=write(data, tmp_path / name), columns=MAPPING, frame_rows=64))).frame
    assert other.equals(plain)


async def test_unmapped_columns_come_from_same_named_file_columns_or_are_null(tmp_path: Path) -> None:
    path = write(trades_frame(10), tmp_path / "t.parquet")
    out = (await replay(ReplaySource(path=path, columns=MAPPING))).frame
    assert out["venue"].to_list() == trades_frame(10)["venue"].to_list()  # file has a 'venue' column
    assert out["trade_id"].null_count() == 0
    assert out["ts_recv"].null_count() == 10
    assert out["conditions"].null_count() == 10


async def test_a_template_with_literal_text_and_one_column(tmp_path: Path) -> None:
    path = write(trades_frame(4), tmp_path / "t.csv")
    mapping = {**MAPPING, "symbol": "X.{sym}", "venue": "{venue}"}
    out = (await replay(ReplaySource(path=path, columns=mapping))).frame
    assert out["symbol"].str.starts_with("X.").all()
    assert set(out["venue"].to_list()) <= {"binance-spot", "binance-usdm"}


async def test_prices_written_as_decimal_text_are_read_as_float64(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("ts,symbol,price,size\n1,A,50,1\n2,A,48.8,2.5\n3,A,7,3\n")
    out = (await replay(ReplaySource(path=path, columns={"ts_event": "ts"}, min_event_time=None))).frame
    assert out["price"].to_list() == [50.0, 48.8, 7.0]
    assert out["size"].to_list() == [1.0, 2.5, 3.0]
    assert out["price"].dtype == pl.Float64


@pytest.mark.parametrize(("unit", "scale"), [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)])
@pytest.mark.parametrize("name", ["t.csv", "t.parquet"])
async def test_each_numeric_ts_unit_is_read_to_nanoseconds(tmp_path: Path, unit: str, scale: int, name: str) -> None:
    seconds = [1_723_161_600, 1_723_161_601, 1_723_161_661]
    data = pl.DataFrame({"t": [s * 1_000_000_000 // scale for s in seconds], "symbol": "A", "price": 1.0, "size": 1.0})
    path = write(data, tmp_path / name)
    out = (await replay(ReplaySource(path=path, columns={"ts_event": "t"}, ts_unit=unit))).frame  # type: ignore[arg-type]
    assert out["ts_event"].to_list() == [s * 1_000_000_000 for s in seconds]


async def test_fractional_seconds_are_read_to_the_microsecond(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,symbol,price,size\n1723161600.25,A,1,1\n1723161600.000001,A,1,1\n")
    out = (await replay(ReplaySource(path=path, columns={"ts_event": "t"}, ts_unit="s"))).frame
    assert out["ts_event"].to_list() == [T0 + 250_000_000, T0 + 1_000]


async def test_iso_timestamps_with_offsets_and_fractions_are_read_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "t,symbol,price,size\n"
        "2024-08-09T00:00:00Z,A,1,1\n"
        "2024-08-09T02:00:00.5+02:00,A,1,1\n"
        "2024-08-09T00:00:01.123456789Z,A,1,1\n"
        "2024-08-09 00:00:02,A,1,1\n"
    )
    out = (await replay(ReplaySource(path=path, columns={"ts_event": "t"}, ts_unit="iso"))).frame
    assert out["ts_event"].to_list() == [T0, T0 + 500_000_000, T0 + 1_123_456_789, T0 + 2_000_000_000]


async def test_a_native_parquet_datetime_column_needs_no_unit(tmp_path: Path) -> None:
    data = pl.DataFrame({"t": [T0, T0 + 1_000], "symbol": "A", "price": 1.0, "size": 1.0})
    data = data.with_columns(pl.col("t").cast(pl.Datetime("ns", "UTC")))
    out = (await replay(ReplaySource(path=write(data, tmp_path / "t.parquet"), columns={"ts_event": "t"}))).frame
    assert out["ts_event"].to_list() == [T0, T0 + 1_000]


async def test_ts_recv_is_read_in_its_own_unit(tmp_path: Path) -> None:
    data = pl.DataFrame({"t_ms": [1_723_161_600_000], "recv": [T0 + 7], "symbol": "A", "price": 1.0, "size": 1.0})
    path = write(data, tmp_path / "t.csv")
    source = ReplaySource(path=path, columns={"ts_event": "t_ms", "ts_recv": "recv"}, ts_unit="ms", ts_recv_unit="ns")
    out = (await replay(source)).frame
    assert out.select("ts_event", "ts_recv").row(0) == (T0, T0 + 7)


async def test_seq_is_the_arrival_row_index_across_the_whole_file(tmp_path: Path) -> None:
    path = write(trades_frame(101), tmp_path / "t.csv.gz")
    sink = await replay(ReplaySource(path=path, columns=MAPPING, frame_rows=7))
    assert sink.frame["seq"].to_list() == list(range(101))


async def test_frames_never_exceed_frame_rows(tmp_path: Path) -> None:
    path = write(trades_frame(500, disorder_ms=30), tmp_path / "t.parquet")
    sink = await replay(ReplaySource(path=path, columns=MAPPING, frame_rows=16, max_out_of_orderness="5ms"))
    heights = [f.height for f in sink.items if isinstance(f, pl.DataFrame)]
    assert max(heights) <= 16
    assert sum(heights) == 500


async def test_watermarks_never_decrease_and_end_with_end_of_time(tmp_path: Path) -> None:
    path = write(trades_frame(200, disorder_ms=25), tmp_path / "t.csv")
    sink = await replay(ReplaySource(path=path, columns=MAPPING, frame_rows=9, max_out_of_orderness="10ms"))
    assert sink.watermarks == sorted(sink.watermarks)
    assert sink.watermarks[-1] == END_OF_TIME
    assert len(set(sink.watermarks)) == len(sink.watermarks)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 120), frame_rows=st.integers(1, 40), bound_ms=st.integers(0, 30), seed=st.integers(0, 99))
def test_output_and_late_rows_do_not_depend_on_frame_rows(rows: int, frame_rows: int, bound_ms: int, seed: int) -> None:
    data = trades_frame(rows, disorder_ms=40, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(data, Path(tmp) / "t.csv.gz")

        def run(n: int) -> RecordingSink:
            source = ReplaySource(path=path, columns=MAPPING, frame_rows=n, max_out_of_orderness=f"{bound_ms}ms")
            result: RecordingSink = asyncio.run(replay(source, RecordingSink()))
            return result

        one_frame, cut = run(1_000), run(frame_rows)
    assert cut.frame.equals(one_frame.frame)
    assert cut.late == one_frame.late
    expected_late = int((data["ts_ns"] < data["ts_ns"].cum_max().shift(1) - bound_ms * 1_000_000).sum())
    assert cut.late == expected_late


async def test_stats_report_rows_emitted_and_the_file_offset(tmp_path: Path) -> None:
    source = ReplaySource(path=write(trades_frame(77), tmp_path / "t.parquet"), columns=MAPPING, frame_rows=10)
    await replay(source)
    assert source.stats() == {"rows_emitted": 77, "offset": 77, "bad_records": 0, "bad_reasons": {}}


def test_from_params_reads_durations_once() -> None:
    params = ReplayParams(path="t.csv", max_out_of_orderness="250ms", columns=MAPPING, max_future="2h", kind="quote")
    source = ReplaySource.from_params(params)
    assert source.params.max_out_of_orderness == 250_000_000
    assert source.params.max_future == 7_200_000_000_000
    assert source.params == params
    assert source.output_kind == "quote"
    unlimited = ReplaySource.from_params(ReplayParams(path="t.csv", max_future=None, on_bad_record="drop"))
    assert unlimited.params.max_future is None
    assert unlimited.params.on_bad_record == "drop"


def test_params_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="frame_rows"):
        ReplaySource(path="t.csv", frame_rows=0)
    with pytest.raises(ValueError, match="extra"):
        ReplayParams.model_validate({"path": "t.csv", "fromat": "csv"})


async def test_paced_replay_sends_rows_only_when_their_time_comes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,symbol,price,size\n0,A,1,1\n0,B,1,1\n1000,A,2,1\n3000,A,3,1\n")
    clock = ManualClock()
    sink = RecordingSink()
    task = asyncio.create_task(
        replay(
            ReplaySource(path=path, columns={"ts_event": "t"}, ts_unit="ms", speed=2.0, min_event_time=None),
            sink,
            RunConfig(clock=clock),
        )
    )
    rows = lambda: sum(f.height for f in sink.frames)  # noqa: E731
    await wait_until(lambda: clock.sleepers == 1 and rows() == 2)
    await clock.advance(0.49)
    await wait_until(lambda: clock.sleepers == 1)
    await settle()
    assert rows() == 2  # the row at 1 s is due at 0.5 s of wall time at speed 2
    await clock.advance(0.01)
    await wait_until(lambda: rows() == 3 and clock.sleepers == 1)
    await clock.advance(0.99)
    await wait_until(lambda: clock.sleepers == 1)
    await settle()
    assert rows() == 3
    await clock.advance(0.01)
    await asyncio.wait_for(task, 5)
    assert rows() == 4
    assert sink.watermarks[-1] == END_OF_TIME


async def test_a_paced_replay_stops_promptly_in_a_long_gap(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,symbol,price,size\n0,A,1,1\n3600,A,2,1\n")
    clock = ManualClock()
    dag = Dag()
    source = ReplaySource(path=path, columns={"ts_event": "t"}, ts_unit="s", speed=1.0, min_event_time=None)
    dag.add_node(Node("replay", source))
    dag.add_node(Node("sink", sink := ListSink())).add_edge("replay", "sink")
    runtime = DagRuntime(dag, RunConfig(clock=clock))
    task = asyncio.create_task(runtime.start())
    await wait_until(lambda: clock.sleepers == 1)
    await runtime.stop()
    await clock.advance(0.1)  # one short sleep later the source sees the stop, an hour before the next row
    stats = await asyncio.wait_for(task, 5)
    assert stats.nodes["replay"].state == "completed"
    assert sink.frame.height == 1
    assert sink.watermarks[-1] == END_OF_TIME


class StoppingSink(ListSink):
    """Ask the runtime for a graceful stop when the first frame arrives."""

    runtime: DagRuntime

    async def on_item(self, item: Any, ctx: Context) -> None:
        await super().on_item(item, ctx)
        await self.runtime.stop()


async def test_a_stop_ends_the_replay_between_frames_and_still_closes_the_stream(tmp_path: Path) -> None:
    source = ReplaySource(path=write(trades_frame(20_000), tmp_path / "t.parquet"), columns=MAPPING, frame_rows=10)
    dag = Dag()
    dag.add_node(Node("replay", source)).add_node(Node("sink", sink := StoppingSink())).add_edge("replay", "sink")
    sink.runtime = DagRuntime(dag)
    await asyncio.wait_for(sink.runtime.start(), 10)
    assert 0 < source.rows_emitted < 20_000
    assert sink.frame.height == source.rows_emitted <= source.offset
    assert sink.watermarks[-1] == END_OF_TIME


async def test_a_missing_file_is_named(tmp_path: Path) -> None:
    message = await source_error(ReplaySource(path=tmp_path / "nope.csv", columns=MAPPING))
    assert "nope.csv" in message
    assert "does not exist" in message


async def test_a_file_that_is_not_parquet_is_a_source_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_bytes(b"ts_ns,px\n1,2\n")
    message = await source_error(ReplaySource(path=path, columns=MAPPING))
    assert "t.parquet" in message
    assert "as Parquet" in message


async def test_a_parquet_file_cut_short_fails_as_a_source_error(tmp_path: Path) -> None:
    whole = write(trades_frame(50), tmp_path / "whole.parquet").read_bytes()
    path = tmp_path / "t.parquet"
    path.write_bytes(whole[:-200] + whole[-8:])  # the footer's magic is intact, the metadata is not
    assert "as Parquet" in await source_error(ReplaySource(path=path, columns=MAPPING))


async def test_a_mapped_column_missing_from_the_file_is_named_with_the_file_columns(tmp_path: Path) -> None:
    path = write(trades_frame(3), tmp_path / "t.csv")
    message = await source_error(ReplaySource(path=path, columns={**MAPPING, "price": "last_px"}))
    assert "'last_px'" in message
    assert "['ts_ns', 'venue', 'sym', 'px', 'qty', 'trade_id']" in message
    message = await source_error(ReplaySource(path=path, columns={**MAPPING, "symbol": "{exchange}:{sym}"}))
    assert "'exchange'" in message


async def test_a_required_column_without_a_source_is_named(tmp_path: Path) -> None:
    path = write(trades_frame(3), tmp_path / "t.parquet")
    message = await source_error(ReplaySource(path=path, columns={"ts_event": "ts_ns", "price": "px"}))
    assert "['size', 'symbol']" in message


@pytest.mark.parametrize(
    ("unit", "lines", "sample"),
    [
        ("ms", ["2024-08-09T00:00:00Z", "2024-08-09T00:00:01Z"], "2024-08-09T00:00:00Z"),
        ("iso", ["yesterday"], "yesterday"),
    ],
)
async def test_a_ts_unit_that_reads_no_timestamp_of_the_first_block_is_a_config_error(
    tmp_path: Path, unit: str, lines: list[str], sample: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("when,symbol,price,size\n" + "".join(f"{line},A,1,1\n" for line in lines))
    message = await source_error(ReplaySource(path=path, columns={"ts_event": "when"}, ts_unit=unit))  # type: ignore[arg-type]
    assert "'when'" in message
    assert sample in message
    assert "ts_unit" in message


async def test_a_file_of_unknown_suffix_asks_for_the_format(tmp_path: Path) -> None:
    path = write(trades_frame(3), tmp_path / "t.txt")
    assert "params.format" in await source_error(ReplaySource(path=path, columns=MAPPING))
    sink = await replay(ReplaySource(path=path, columns=MAPPING, format="csv"))
    assert sink.frame.height == 3


async def test_mapping_an_unknown_canonical_column_is_a_config_error(tmp_path: Path) -> None:
    path = write(trades_frame(3), tmp_path / "t.csv")
    with pytest.raises(NodeError) as info:
        await replay(ReplaySource(path=path, columns={**MAPPING, "bid": "px"}))
    assert isinstance(info.value.cause, ConfigError)
    assert "'bid'" in str(info.value.cause)


async def test_a_timestamp_can_be_joined_from_date_and_time_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("date,time,symbol,price,size\n2024-08-09,00:00:01.5,A,1,1\n2024-08-09,00:00:02,A,1,1\n")
    source = ReplaySource(path=path, columns={"ts_event": "{date}T{time}Z"}, ts_unit="iso")
    out = (await replay(source)).frame
    assert out["ts_event"].to_list() == [T0 + 1_500_000_000, T0 + 2_000_000_000]


async def test_text_in_a_numeric_column_is_a_bad_number_that_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,symbol,last,size\n1,NA,1.5,1\n2,NULL,n/a,1\n")
    mapping = {"ts_event": "t", "price": "last"}
    source = ReplaySource(path=path, columns=mapping, min_event_time=None, max_bad_share=None)
    sink, dead = await replay_with_deadletters(source)
    assert sink.frame["price"].to_list() == [1.5]
    assert dead.frame.select("row", "reason").rows() == [(1, "bad_number")]
    assert json.loads(dead.frame["raw"][0]) == {"t": "2", "symbol": "NULL", "last": "n/a", "size": "1"}


async def test_only_an_empty_field_is_missing_so_tickers_like_na_survive(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("t,symbol,price,size,venue\n1,NA,1.5,1,\n2,NULL,2,1,x\n3,A,nan,1,x\n")
    sink, dead = await replay_with_deadletters(ReplaySource(path=path, columns={"ts_event": "t"}, min_event_time=None))
    assert sink.frame["symbol"].to_list() == ["NA", "NULL"]
    assert sink.frame["venue"].to_list() == [None, "x"]
    assert dead.frame["reason"].to_list() == ["nan_price"]


QUOTES = (
    "recv_ns,event_ms,venue,sym,update_id,bid_px,bid_qty,ask_px,ask_qty\n"
    "1723161600000000100,1723161600000,usdm,BTC,10,100.0,1.5,100.1,2\n"
    "1723161600000000200,,spot,BTC,7,99.9,1,100.0,3\n"
    "1723161600000000300,1723161600001,usdm,BTC,11,100.2,1,100.1,2\n"
    "1723161600000000400,1723161600002,usdm,BTC,12,100.0,0,100.0,2\n"
)
QUOTE_COLUMNS = {
    "ts_event": "event_ms",
    "ts_recv": "recv_ns",
    "symbol": "{venue}:{sym}",
    "bid": "bid_px",
    "bid_size": "bid_qty",
    "ask": "ask_px",
    "ask_size": "ask_qty",
    "seq": "update_id",
}


async def test_kind_quote_replays_quote_frames_and_sends_crossed_quotes_to_the_deadletter_port(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.csv"
    path.write_text(QUOTES)
    source = ReplaySource(path=path, kind="quote", columns=QUOTE_COLUMNS, ts_unit="ms", ts_recv_unit="ns")
    sink, dead = await replay_with_deadletters(source)
    out = sink.frame
    assert out.schema == pl.Schema(QUOTE_SCHEMA)
    assert out.select("symbol", "ts_event", "bid", "ask", "seq").rows() == [
        ("usdm:BTC", T0, 100.0, 100.1, 10),
        ("usdm:BTC", T0 + 2_000_000, 100.0, 100.0, 12),  # locked, not crossed
    ]
    assert dead.frame.select("row", "reason", "kind").rows() == [
        (1, "bad_timestamp", "quote"),
        (2, "crossed_quote", "quote"),
    ]


async def test_ts_fallback_fills_only_empty_event_times_in_its_own_unit(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(QUOTES.replace("1723161600002,", "soon,"))
    source = ReplaySource(
        path=path,
        kind="quote",
        columns=QUOTE_COLUMNS,
        ts_unit="ms",
        ts_recv_unit="ns",
        ts_fallback="recv_ns",
        ts_fallback_unit="ns",
    )
    sink, dead = await replay_with_deadletters(source)
    assert sink.frame.select("seq", "ts_event").rows() == [(10, T0), (7, T0 + 200)]
    # a value that is there but cannot be read is bad data: it does not fall back
    assert dead.frame.select("row", "reason").rows() == [(2, "crossed_quote"), (3, "bad_timestamp")]
    assert json.loads(dead.frame["raw"][1])["event_ms"] == "soon"


async def test_a_ts_fallback_missing_from_the_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(QUOTES)
    source = ReplaySource(path=path, kind="quote", columns=QUOTE_COLUMNS, ts_unit="ms", ts_fallback="recv_time")
    message = await source_error(source)
    assert "'recv_time'" in message
    assert "ts_fallback" in message


async def test_an_empty_first_block_of_event_times_suggests_ts_fallback(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(QUOTES.splitlines()[0] + "\n" + QUOTES.splitlines()[2] + "\n")
    message = await source_error(ReplaySource(path=path, kind="quote", columns=QUOTE_COLUMNS, ts_unit="ms"))
    assert "empty timestamp" in message
    assert "ts_fallback" in message


def test_graph_validation_sees_the_kind_on_each_port(tmp_path: Path) -> None:
    quotes = ReplaySource(path=tmp_path / "q.csv", kind="quote", columns=QUOTE_COLUMNS)
    assert (quotes.port_kind("out"), quotes.port_kind("deadletter")) == ("quote", "deadletter")
    assert quotes.outputs == ("out", "deadletter")
    dag = Dag().add_node(Node("q", quotes)).add_node(Node("bars", BarsOperator(timeframe="1m")))
    dag.add_node(Node("sink", ListSink())).add_edge("q", "bars").add_edge("bars", "sink")
    with pytest.raises(DagValidationError, match="produces quote records"):
        dag.validate()
    trades = ReplaySource(path=tmp_path / "t.csv", columns=MAPPING)
    dag = Dag().add_node(Node("t", trades)).add_node(Node("bars", BarsOperator(timeframe="1m")))
    dag.add_node(Node("sink", ListSink())).add_edge("t", "bars", port="deadletter").add_edge("bars", "sink")
    with pytest.raises(DagValidationError, match="produces deadletter records"):
        dag.validate()


# -- the one-query parse of blocks already in canonical types ---------------------------------------------


_TYPES = {
    "ts": [pl.Int64, pl.Int32, pl.UInt64, pl.Float64],
    "px": [pl.Float64, pl.Float32, pl.Int64, pl.Int16, pl.String],
    "qty": [pl.Int64, pl.UInt32, pl.UInt64, pl.Float64],
}


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(1, 12),
    ts_type=st.sampled_from(_TYPES["ts"]),
    px_type=st.sampled_from(_TYPES["px"]),
    qty_type=st.sampled_from(_TYPES["qty"]),
    unit=st.sampled_from(["ns", "us"]),
    nulls=st.booleans(),
    first_row=st.integers(0, 10**6),
)
def test_plain_blocks_parse_as_the_general_path_does(
    n: int,
    ts_type: pl.DataType,
    px_type: pl.DataType,
    qty_type: pl.DataType,
    unit: str,
    nulls: bool,
    first_row: int,
) -> None:
    """Blocks whose columns can be taken as they are skip the per-value checks; whatever the file's
    types, the canonical frame and the problems are those of the general path."""
    from mdp.sources import columns

    raw = pl.DataFrame(
        {
            "ts": [10**6 + i for i in range(n)],
            "sym": ["AAA" if i % 2 else "BB" for i in range(n)],
            "px": [None if nulls and i == 0 else 100 + i for i in range(n)],
            "qty": [1 + i for i in range(n)],
        }
    ).with_columns(pl.col("ts").cast(ts_type), pl.col("px").cast(px_type), pl.col("qty").cast(qty_type))
    units: dict[str, Any] = {"ts_event": unit, "ts_recv": unit}
    mapping = {"ts_event": "ts", "symbol": "sym", "price": "px", "size": "qty"}
    plan = columns.ColumnPlan("trade", mapping, raw.columns, units, "test")
    got = plan.parse(raw, first_row)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(columns.ColumnPlan, "_plain_select", lambda self, raw, first_row: None)
        want = plan.parse(raw, first_row)
    assert got.frame.equals(want.frame)
    assert (got.problems is None) == (want.problems is None)
    if got.problems is not None and want.problems is not None:
        assert got.problems.equals(want.problems)
    plain = plan._plain_select(raw, first_row) is not None
    as_they_are = ts_type == pl.Int64 and unit == "ns" and px_type != pl.String  # any number casts to Float64
    assert plain == (as_they_are and not nulls)


#: 2024-08-09T00:00:00Z in ns: a plausible event time
T_2024 = 1_723_161_600_000_000_000


async def test_a_parquet_file_corrupt_part_way_fails_after_the_rows_before_went_through(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    n = 40_000
    data = pl.DataFrame({"t": [T_2024 + i for i in range(n)], "symbol": "A", "price": 1.5, "size": 1.0})
    data.write_parquet(path := tmp_path / "t.parquet", row_group_size=10_000, compression="zstd")
    damaged = bytearray(path.read_bytes())
    at = pq.ParquetFile(path).metadata.row_group(3).column(2).data_page_offset
    damaged[at + 10 : at + 200] = b"\x55" * 190
    path.write_bytes(bytes(damaged))
    sink = ListSink()
    with pytest.raises(NodeError) as info:
        await replay(ReplaySource(path=path, columns={"ts_event": "t"}, frame_rows=10_000), sink)
    assert isinstance(info.value.cause, InputError)
    assert str(info.value.cause).startswith("'" + str(path) + "' cannot be read on after row 30,000: ")
    assert sink.frame["ts_event"].to_list() == [T_2024 + i for i in range(30_000)]


def test_min_event_time_reads_yaml_dates_and_iso_text_and_names_its_key_when_bad() -> None:
    import datetime as dt

    from pydantic import ValidationError

    base = {"path": "t.csv"}
    assert ReplayParams.model_validate(base).min_event_time == 631_152_000_000_000_000  # 1990-01-01
    assert ReplayParams.model_validate({**base, "min_event_time": dt.date(2024, 8, 9)}).min_event_time == T_2024
    assert ReplayParams.model_validate({**base, "min_event_time": "2024-08-09T00:00:00Z"}).min_event_time == T_2024
    assert ReplayParams.model_validate({**base, "min_event_time": None}).min_event_time is None
    with pytest.raises(ValidationError) as info:
        ReplayParams.model_validate({**base, "min_event_time": "yesterday"})
    assert info.value.errors()[0]["loc"] == ("min_event_time",)
