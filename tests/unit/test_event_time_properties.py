"""The same stream cut into frames anywhere gives the same bars, revisions and late rows, for every window
kind, late policy and watermark mode.

Trades go through the real path: a source cuts the stream at random points and sends each frame behind
its watermarks (``emit_with_watermarks``; per-key sources hold the in-band watermark at the minimum
over keys), over channels of random capacity, to the operator, whose ``out`` and ``late`` ports both
reach sinks. Revisions are compared as the set of emitted bars, revision numbers included.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.operators.bars import BarsOperator
from mdp.operators.bars import operator as bars_module
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.runtime.operator import Context, Source
from mdp.runtime.runtime import RunConfig
from mdp.runtime.watermarks import PerKeyWatermarkTracker, WatermarkTracker, emit_with_watermarks
from mdp.testing import ListSink, run_graph

S = 1_000_000_000
UNIT = 100_000_000  # 100 ms steps: ties on ts_event are common
BOUND = 5 * UNIT
T0 = 1_723_161_240 * S
SYMBOLS = ("A", "B", "C")

Row = tuple[str, int, float, float, int]

#: every window kind and late policy, and per-key watermarks; each is run with several frame cuts
CONFIGS: list[dict[str, Any]] = [
    {"timeframe": "1s"},
    {"timeframe": "1s", "late_policy": "side_output"},
    {"timeframe": "1s", "late_policy": "revise"},
    {"timeframe": "1s", "late_policy": "revise", "allowed_lateness": "2s"},
    {"timeframe": "1s", "late_policy": "revise", "allowed_lateness": "1s", "fill_empty": True},
    {"timeframe": "2s", "window": "sliding", "step": "1s", "late_policy": "revise", "allowed_lateness": "1s"},
    {"timeframe": "2s", "window": "sliding", "step": "1s", "late_policy": "side_output"},
    {"window": "session", "gap": "700ms"},
    {"window": "session", "gap": "700ms", "late_policy": "revise", "allowed_lateness": "1s"},
    {"timeframe": "1s", "watermark": "per_key", "max_out_of_orderness": BOUND, "late_policy": "side_output"},
    {
        "timeframe": "1s",
        "watermark": "per_key",
        "max_out_of_orderness": BOUND,
        "late_policy": "revise",
        "allowed_lateness": "1s",
    },
    {
        "window": "session",
        "gap": "700ms",
        "watermark": "per_key",
        "max_out_of_orderness": BOUND,
        "late_policy": "revise",
    },
]


class CutSource(Source):
    """Send ``trades`` cut into frames of the given sizes, each behind its watermarks."""

    def __init__(self, trades: pl.DataFrame, cuts: list[int], per_key: bool) -> None:
        self.trades, self.cuts = trades, cuts
        self.tracker = PerKeyWatermarkTracker(BOUND) if per_key else WatermarkTracker(BOUND)

    async def run(self, ctx: Context) -> None:
        offset, i = 0, 0
        while offset < self.trades.height:
            size = self.cuts[i % len(self.cuts)]
            await emit_with_watermarks(ctx, self.trades.slice(offset, size), self.tracker)
            offset, i = offset + size, i + 1


@dataclass
class Output:
    bars: list[tuple[Any, ...]]
    late: list[int]
    stats: dict[str, Any]


def stream(config: dict[str, Any], rows: list[Row], cuts: list[int], capacity: int) -> Output:
    frame = conform(pl.DataFrame(rows, schema=["symbol", "ts_event", "price", "size", "seq"], orient="row"), "trade")
    bars, late, op = ListSink(), ListSink(), BarsOperator(**config)
    dag = Dag()
    dag.add_node(Node("source", CutSource(frame, cuts, config.get("watermark") == "per_key")))
    dag.add_node(Node("bars", op)).add_node(Node("out", bars)).add_node(Node("late", late))
    dag.add_edge("source", "bars").add_edge("bars", "out").add_edge("bars", "late", port="late")
    asyncio.run(run_graph(dag, RunConfig(channel_capacity=capacity, channel_capacity_rows=None)))
    got = bars.frame.sort("symbol", "start", "revision").rows() if bars.items else []
    late_seqs = sorted(late.frame.get_column("seq").to_list()) if late.items else []
    stats = {k: v for k, v in op.stats().items() if k not in ("open_windows", "kept_windows")}
    return Output(got, late_seqs, stats)


@st.composite
def streams(draw: st.DrawFn) -> list[Row]:
    """Trades mostly in order, some a little behind, some far behind: every policy has work to do."""
    n = draw(st.integers(1, 60))
    seqs = draw(st.permutations(range(n)))
    rows: list[Row] = []
    high = T0
    for i in range(n):
        ts = max(T0, high + draw(st.integers(-40, 6)) * UNIT)
        high = max(high, ts)
        price = float(draw(st.integers(1, 1_000)))
        size = float(draw(st.integers(1, 50)))
        rows.append((draw(st.sampled_from(SYMBOLS)), ts, price, size, seqs[i]))
    return rows


cut_lists = st.lists(st.integers(1, 25), min_size=1, max_size=6)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@settings(max_examples=20, deadline=None)
@given(rows=streams(), cuts=cut_lists, capacity=st.integers(1, 4))
def test_every_window_kind_and_policy_gives_the_same_output_whatever_the_frame_cuts(
    config: dict[str, Any], rows: list[Row], cuts: list[int], capacity: int
) -> None:
    whole = stream(config, rows, [len(rows)], 64)
    assert stream(config, rows, cuts, capacity) == whole
    assert stream(config, rows, [1], 1) == whole
    keys = [(b[0], b[2], b[12]) for b in whole.bars]  # symbol, start, revision
    assert len(keys) == len(set(keys)), "a revision number was used twice"


@pytest.mark.parametrize("config", [*CONFIGS[:2], CONFIGS[6]], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@settings(max_examples=20, deadline=None)
@given(rows=streams(), cuts=cut_lists, capacity=st.integers(1, 4), batch=st.integers(1, 40), held=st.integers(1, 40))
def test_closes_batched_while_input_waits_give_the_same_output(
    config: dict[str, Any], rows: list[Row], cuts: list[int], capacity: int, batch: int, held: int
) -> None:
    """With the thresholds at a row, the operator batches its closes whenever a trade waits (the policies
    and windows that batch: drop and side output, tumbling and sliding), and judges the frames it held
    meanwhile together, in batches of up to ``held`` rows."""
    whole = stream(config, rows, [len(rows)], 64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bars_module, "BEHIND_ROWS", 1)
        patch.setattr(bars_module, "CLOSE_BATCH_ROWS", batch)
        patch.setattr(bars_module, "RAW_ROWS", held)
        assert stream(config, rows, cuts, capacity + 16) == whole
        assert stream(config, rows, [1], capacity) == whole
