"""QuoteResample: last quote per symbol and interval, emitted when the watermark closes the interval."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import NodeError
from mdp.operators.market.resample import QuoteResample, QuoteResampleParams
from mdp.records import END_OF_TIME, Watermark, conform
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSink, ListSource, arun_operator, run_graph, run_operator

S = 1_000_000_000


def quotes(symbols: list[str], ts: list[int], bids: list[float], seq: list[int] | None = None) -> pl.DataFrame:
    frame = pl.DataFrame({"symbol": symbols, "ts_event": ts, "bid": bids, "seq": seq or [0] * len(ts)})
    return conform(frame.with_columns(ask=pl.col("bid") + 1, bid_size=pl.lit(1.0), ask_size=pl.lit(1.0)), "quote")


async def test_the_last_quote_of_each_interval_is_emitted_when_the_watermark_passes_its_end() -> None:
    sink = ListSink()
    items = [quotes(["X", "Y", "X"], [0, S // 2, S - 1], [1.0, 5.0, 2.0]), Watermark(S - 1), Watermark(S)]
    dag = Dag().add_node(Node("src", ListSource(items))).add_node(Node("rs", QuoteResample("1s")))
    await run_graph(dag.add_node(Node("sink", sink)).add_edge("src", "rs").add_edge("rs", "sink"))
    assert len(sink.items) == 1  # nothing before the watermark reached 1 s
    assert sink.frame.select("symbol", "ts_event", "bid").rows() == [("X", 0, 2.0), ("Y", 0, 5.0)]
    assert sink.watermarks == [0, S, END_OF_TIME]  # held to the start of the open interval


@pytest.mark.parametrize(("label", "ts"), [("start", 10 * S), ("end", 11 * S), ("quote", 10 * S + 7)])
async def test_the_label_sets_ts_event(label: str, ts: int) -> None:
    (out,) = await arun_operator(QuoteResample("1s", label=label), [quotes(["X"], [10 * S + 7], [1.0])])  # type: ignore[arg-type]
    assert out["ts_event"].to_list() == [ts]


async def test_ties_in_time_go_to_the_higher_seq_then_the_later_arrival() -> None:
    frames = [quotes(["X", "X"], [5, 5], [1.0, 2.0], [9, 3]), quotes(["X"], [5], [3.0], [9])]
    (out,) = await arun_operator(QuoteResample("1s"), frames)
    assert out["bid"].to_list() == [3.0]


async def test_late_quotes_are_dropped_and_counted_or_sent_to_the_late_port() -> None:
    items = [quotes(["X"], [5 * S], [1.0]), Watermark(5 * S), quotes(["X"], [4 * S], [9.0])]
    op = QuoteResample("1s")
    out = await arun_operator(op, items)
    assert [f["bid"].to_list() for f in out] == [[1.0]]
    assert op.stats()["late"] == 1
    late, main = ListSink(), ListSink()
    dag = Dag().add_node(Node("src", ListSource(items))).add_node(Node("rs", QuoteResample("1s", late="side_output")))
    dag.add_node(Node("out", main)).add_node(Node("late", late)).add_edge("src", "rs").add_edge("rs", "out")
    await run_graph(dag.add_edge("rs", "late", port="late"))
    assert late.frame["bid"].to_list() == [9.0]


async def test_side_output_needs_an_edge_from_late() -> None:
    with pytest.raises(NodeError, match="port 'late'"):
        await arun_operator(QuoteResample(late="side_output"), [])


async def test_an_offset_moves_the_grid() -> None:
    (out,) = await arun_operator(QuoteResample("1m", offset="30s"), [quotes(["X"], [100 * S], [1.0])])
    assert out["ts_event"].to_list() == [90 * S]


def test_params_reject_unknown_keys_and_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="extra"):
        QuoteResampleParams.model_validate({"interval": "1s", "fill": True})
    with pytest.raises(ValueError, match="greater than 0"):
        QuoteResampleParams.model_validate({"interval": 0})
    assert QuoteResample.from_params(QuoteResampleParams.model_validate({"interval": "5s"})).interval == 5 * S


def batch_reference(frame: pl.DataFrame, interval: int) -> list[tuple[Any, ...]]:
    """The same sampling as one polars group-by over the whole stream."""
    return (
        frame.with_row_index("arrival")
        .sort(["ts_event", "seq", "arrival"])
        .group_by("symbol", pl.col("ts_event") // interval * interval, maintain_order=True)
        .agg(pl.col("bid").last())
        .sort("ts_event", "symbol")
        .rows()
    )


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from("ABC"), st.integers(0, 10_000), st.integers(0, 3)), min_size=1, max_size=80
    ),
    cut=st.integers(1, 25),
)
def test_streamed_sampling_equals_a_batch_group_by_however_frames_are_cut(
    rows: list[tuple[str, int, int]], cut: int
) -> None:
    rows = sorted(rows, key=lambda r: r[1])  # in order, so no quote is late
    frame = quotes(
        [r[0] for r in rows], [r[1] for r in rows], [float(i) for i in range(len(rows))], [r[2] for r in rows]
    )
    items: list[Any] = []
    for i in range(0, frame.height, cut):
        part = frame[i : i + cut]
        items += [part, Watermark(int(part["ts_event"].max()))]  # type: ignore[arg-type]
    out = pl.concat(run_operator(QuoteResample(interval=1000), items))  # 1,000 ns intervals
    assert out.select("symbol", "ts_event", "bid").sort("ts_event", "symbol").rows() == batch_reference(frame, 1000)
