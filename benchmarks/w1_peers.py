"""The W1 job written without mdp, one implementation per name; run as ``python w1_peers.py NAME IN OUT``.

The job: trades in file (delivery) order, ``seq`` = row position. The watermark is the largest event
time seen so far minus 5 s; a row whose ``ts_event`` is below the watermark in force when it arrives is
late, dropped and counted. The rest make per-symbol 1-minute tumbling bars ``[start, start + 1m)``
aligned to the epoch; a bar is emitted once the watermark reaches its end (and every open bar at end of
input). open/close = first/last by ``(ts_event, seq)``, high/low = max/min, volume = sum of size,
vwap = sum(price * size) / volume, trades = count.

Implementations (each writes its bars to OUT as Parquet and prints one JSON line of counts):

* ``plain``: the reference, a single hand-written Python loop over the rows.
* ``asyncio``: a naive 3-stage asyncio pipeline (reader -> bars -> writer), one row per ``Queue.put``.
* ``polars``: one batch ``group_by`` over the whole file (not streaming; the late rule is vectorised).
* ``bytewax``: Bytewax 0.21 ``EventClock`` + ``TumblingWindower`` + ``fold_window`` with its system
  clock frozen (``now_getter``), so a fast replay does not advance the watermark by wall time.

Only the standard library and pyarrow are needed, plus polars or bytewax for those two, so the script
also runs in the peers' own virtual environment.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

BOUND_NS = 5_000_000_000
TF_NS = 60_000_000_000
NO_TS = -(2**63)
END_OF_TIME = 2**63 - 1
COLUMNS = ["ts_event", "symbol", "price", "size"]
BAR_COLUMNS = ["symbol", "start", "open", "high", "low", "close", "volume", "vwap", "trades"]
BAR_SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("start", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("vwap", pa.float64()),
        ("trades", pa.int64()),
    ]
)

# state of one open bar: [open_ts, open, high, low, close_ts, close, volume, notional, trades]
Bar = list[Any]


def read_columns(path: str) -> tuple[list[int], list[str], list[float], list[int]]:
    table = pq.read_table(path, columns=COLUMNS)
    return (
        table.column("ts_event").to_pylist(),
        table.column("symbol").to_pylist(),
        table.column("price").to_pylist(),
        table.column("size").to_pylist(),
    )


def bar_row(symbol: str, start: int, b: Bar) -> tuple[Any, ...]:
    return (symbol, start, b[1], b[2], b[3], b[5], float(b[6]), b[7] / b[6], b[8])


def write_bars(path: str, rows: list[tuple[Any, ...]]) -> None:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in BAR_COLUMNS]
    arrays = {
        name: pa.array(col, type=BAR_SCHEMA.field(name).type) for name, col in zip(BAR_COLUMNS, columns, strict=True)
    }
    table = pa.table(arrays)
    pq.write_table(table, path)


# -- the reference: one plain loop ------------------------------------------------------------------


def run_plain(inp: str, out: str) -> dict[str, Any]:
    ts_col, sym_col, px_col, sz_col = read_columns(inp)
    t0 = time.perf_counter()
    bars: list[tuple[Any, ...]] = []
    open_bars: dict[tuple[str, int], Bar] = {}
    by_end: dict[int, list[tuple[str, int]]] = {}
    max_ts = NO_TS
    wm = NO_TS
    next_close = END_OF_TIME
    late = 0
    for ts, sym, px, sz in zip(ts_col, sym_col, px_col, sz_col, strict=True):
        if ts < wm:
            late += 1
            continue
        start = ts - ts % TF_NS
        key = (sym, start)
        b = open_bars.get(key)
        if b is None:
            open_bars[key] = [ts, px, px, px, ts, px, sz, px * sz, 1]
            end = start + TF_NS
            keys = by_end.get(end)
            if keys is None:
                by_end[end] = [key]
                if end < next_close:
                    next_close = end
            else:
                keys.append(key)
        else:
            # seq grows with the row position: an equal ts is a later trade, so it never opens, always closes
            if ts < b[0]:
                b[0] = ts
                b[1] = px
            if px > b[2]:
                b[2] = px
            elif px < b[3]:
                b[3] = px
            if ts >= b[4]:
                b[4] = ts
                b[5] = px
            b[6] += sz
            b[7] += px * sz
            b[8] += 1
        if ts > max_ts:
            max_ts = ts
            wm = ts - BOUND_NS
            if wm >= next_close:
                for end in sorted(e for e in by_end if e <= wm):
                    for k in by_end.pop(end):
                        bars.append(bar_row(k[0], k[1], open_bars.pop(k)))
                next_close = min(by_end, default=END_OF_TIME)
    for end in sorted(by_end):
        for k in by_end.pop(end):
            bars.append(bar_row(k[0], k[1], open_bars.pop(k)))
    seconds = time.perf_counter() - t0
    write_bars(out, bars)
    return {"rows": len(ts_col), "bars": len(bars), "late": late, "loop_seconds": seconds}


# -- naive asyncio: three tasks, one row per put ----------------------------------------------------


class BarsLogic:
    """The plain loop's per-row step as an object, for the pipelined variants."""

    def __init__(self) -> None:
        self.open_bars: dict[tuple[str, int], Bar] = {}
        self.by_end: dict[int, list[tuple[str, int]]] = {}
        self.max_ts = NO_TS
        self.wm = NO_TS
        self.next_close = END_OF_TIME
        self.late = 0

    def on_row(self, ts: int, sym: str, px: float, sz: int) -> list[tuple[Any, ...]] | None:
        if ts < self.wm:
            self.late += 1
            return None
        start = ts - ts % TF_NS
        key = (sym, start)
        b = self.open_bars.get(key)
        if b is None:
            self.open_bars[key] = [ts, px, px, px, ts, px, sz, px * sz, 1]
            end = start + TF_NS
            self.by_end.setdefault(end, []).append(key)
            self.next_close = min(self.next_close, end)
        else:
            if ts < b[0]:
                b[0], b[1] = ts, px
            b[2] = max(b[2], px)
            b[3] = min(b[3], px)
            if ts >= b[4]:
                b[4], b[5] = ts, px
            b[6] += sz
            b[7] += px * sz
            b[8] += 1
        if ts > self.max_ts:
            self.max_ts = ts
            self.wm = ts - BOUND_NS
            if self.wm >= self.next_close:
                return self.close_until(self.wm)
        return None

    def close_until(self, wm: int) -> list[tuple[Any, ...]]:
        out = []
        for end in sorted(e for e in self.by_end if e <= wm):
            for k in self.by_end.pop(end):
                out.append(bar_row(k[0], k[1], self.open_bars.pop(k)))
        self.next_close = min(self.by_end, default=END_OF_TIME)
        return out


def run_asyncio(inp: str, out: str) -> dict[str, Any]:
    ts_col, sym_col, px_col, sz_col = read_columns(inp)
    logic = BarsLogic()
    bars: list[tuple[Any, ...]] = []

    async def reader(q: asyncio.Queue[Any]) -> None:
        for row in zip(ts_col, sym_col, px_col, sz_col, strict=True):
            await q.put(row)
        await q.put(None)

    async def barmaker(q_in: asyncio.Queue[Any], q_out: asyncio.Queue[Any]) -> None:
        while (row := await q_in.get()) is not None:
            emitted = logic.on_row(*row)
            if emitted:
                for bar in emitted:
                    await q_out.put(bar)
        for bar in logic.close_until(END_OF_TIME):
            await q_out.put(bar)
        await q_out.put(None)

    async def writer(q: asyncio.Queue[Any]) -> None:
        while (bar := await q.get()) is not None:
            bars.append(bar)

    async def pipeline() -> None:
        q1: asyncio.Queue[Any] = asyncio.Queue(1024)
        q2: asyncio.Queue[Any] = asyncio.Queue(1024)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(reader(q1))
            tg.create_task(barmaker(q1, q2))
            tg.create_task(writer(q2))

    t0 = time.perf_counter()
    asyncio.run(pipeline())
    seconds = time.perf_counter() - t0
    write_bars(out, bars)
    return {"rows": len(ts_col), "bars": len(bars), "late": logic.late, "loop_seconds": seconds}


# -- polars: one batch group_by ---------------------------------------------------------------------


def run_polars(inp: str, out: str) -> dict[str, Any]:
    import polars as pl

    t0 = time.perf_counter()
    df = pl.read_parquet(inp, columns=COLUMNS).with_row_index("seq")
    before = pl.col("ts_event").cum_max().shift(1)
    df = df.with_columns(late=(pl.col("ts_event") < before - BOUND_NS).fill_null(False))
    late = int(df.get_column("late").sum())
    order = ["ts_event", "seq"]
    bars = (
        df.filter(~pl.col("late"))
        .with_columns(start=pl.col("ts_event") - pl.col("ts_event") % TF_NS)
        .group_by("symbol", "start")
        .agg(
            open=pl.col("price").sort_by(order).first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").sort_by(order).last(),
            volume=pl.col("size").sum().cast(pl.Float64),
            vwap=(pl.col("price") * pl.col("size")).sum() / pl.col("size").sum(),
            trades=pl.len().cast(pl.Int64),
        )
        .select(BAR_COLUMNS)
    )
    seconds = time.perf_counter() - t0
    bars.write_parquet(out)
    return {"rows": df.height, "bars": bars.height, "late": late, "loop_seconds": seconds}


# -- bytewax 0.21 -----------------------------------------------------------------------------------


def run_bytewax(inp: str, out: str) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import DynamicSource, StatelessSourcePartition
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.run import cli_main

    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    frozen = datetime(2000, 1, 1, tzinfo=UTC)
    batch_rows = 10_000
    result: dict[str, Any] = {"bars": 0, "late": 0, "rows": 0}

    class ParquetPartition(StatelessSourcePartition[tuple[Any, ...]]):
        def __init__(self) -> None:
            self._batches: Iterator[pa.RecordBatch] = pq.ParquetFile(inp).iter_batches(batch_rows, columns=COLUMNS)
            self._seq = 0

        def next_batch(self) -> list[tuple[Any, ...]]:
            batch = next(self._batches)  # StopIteration ends the input
            n = batch.num_rows
            cols = [batch.column(i).to_pylist() for i in range(4)]
            seqs = range(self._seq, self._seq + n)
            self._seq += n
            return list(zip(*cols, seqs, strict=True))

    class ParquetSource(DynamicSource[tuple[Any, ...]]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> ParquetPartition:
            return ParquetPartition()

    class BarsPartition(StatelessSinkPartition[Any]):
        def __init__(self) -> None:
            self.bars: list[tuple[Any, ...]] = []
            self.late = 0

        def write_batch(self, items: list[Any]) -> None:
            for kind, payload in items:
                if kind == "bar":
                    self.bars.append(payload)
                else:
                    self.late += 1

        def close(self) -> None:
            write_bars(out, self.bars)
            result["bars"] = len(self.bars)
            result["late"] = self.late

    class BarsSink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> BarsPartition:
            return BarsPartition()

    def event_time(row: tuple[Any, ...]) -> datetime:
        return epoch + timedelta(microseconds=row[0] // 1_000)

    def build() -> list[Any]:
        return []

    def fold(acc: list[Any], row: tuple[Any, ...]) -> list[Any]:
        ts, _, px, sz, seq = row
        if not acc:
            return [ts, seq, px, px, px, ts, seq, px, sz, px * sz, 1]
        if ts < acc[0] or (ts == acc[0] and seq < acc[1]):
            acc[0], acc[1], acc[2] = ts, seq, px
        if px > acc[3]:
            acc[3] = px
        if px < acc[4]:
            acc[4] = px
        if ts > acc[5] or (ts == acc[5] and seq > acc[6]):
            acc[5], acc[6], acc[7] = ts, seq, px
        acc[8] += sz
        acc[9] += px * sz
        acc[10] += 1
        return acc

    def merge(a: list[Any], b: list[Any]) -> list[Any]:
        raise AssertionError("tumbling windows never merge")

    def to_bar(item: tuple[str, tuple[int, list[Any]]]) -> tuple[str, tuple[Any, ...]]:
        sym, (_, a) = item
        start = a[0] - a[0] % TF_NS
        return ("bar", (sym, start, a[2], a[3], a[4], a[7], float(a[8]), a[9] / a[8], a[10]))

    flow = Dataflow("w1_bars")
    rows = op.input("trades", flow, ParquetSource())
    keyed = op.key_on("by_symbol", rows, lambda row: row[1])
    clock = EventClock(event_time, wait_for_system_duration=timedelta(seconds=5), now_getter=lambda: frozen)
    windower = TumblingWindower(length=timedelta(minutes=1), align_to=epoch)
    wout = fold_window("bars", keyed, clock, windower, build, fold, merge, ordered=False)
    bars = op.map("to_bar", wout.down, to_bar)
    late = op.map("to_late", wout.late, lambda item: ("late", None))
    op.output("store", op.merge("all", bars, late), BarsSink())

    t0 = time.perf_counter()
    cli_main(flow, workers_per_process=1)
    seconds = time.perf_counter() - t0
    result["rows"] = pq.ParquetFile(inp).metadata.num_rows
    result["loop_seconds"] = seconds
    return result


IMPLEMENTATIONS = {"plain": run_plain, "asyncio": run_asyncio, "polars": run_polars, "bytewax": run_bytewax}


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in IMPLEMENTATIONS:
        raise SystemExit(f"usage: w1_peers.py {{{','.join(IMPLEMENTATIONS)}}} INPUT.parquet OUTPUT.parquet")
    name, inp, out = argv
    result = IMPLEMENTATIONS[name](inp, out)
    print(json.dumps({"impl": name, **result}))


if __name__ == "__main__":
    main(sys.argv[1:])
