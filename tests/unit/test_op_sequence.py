"""SequenceCheck: rows pass through; gaps and repeats per symbol are reported on port ``gaps``."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError
from mdp.operators.market.sequence import SequenceCheck, SequenceCheckParams
from mdp.records import conform
from mdp.runtime.graph import Dag, Node
from mdp.testing import ListSink, ListSource, run_graph


def trades(symbols: list[str], seqs: list[Any], column: str = "seq") -> pl.DataFrame:
    frame = pl.DataFrame({"symbol": symbols, "ts_event": list(range(len(symbols))), column: seqs})
    return conform(frame.with_columns(price=pl.lit(1.0), size=pl.lit(1.0)), "trade")


async def check(op: SequenceCheck, frames: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    out, gaps = ListSink(), ListSink()
    dag = Dag().add_node(Node("src", ListSource(frames))).add_node(Node("check", op))
    dag.add_node(Node("out", out)).add_node(Node("gaps", gaps))
    await run_graph(dag.add_edge("src", "check").add_edge("check", "out").add_edge("check", "gaps", port="gaps"))
    return out.frame, gaps.frame


async def test_rows_pass_through_and_a_gap_is_reported_with_what_was_expected() -> None:
    frame = trades(["X", "X", "Y", "X", "Y"], [1, 2, 10, 5, 11])
    out, gaps = await check(SequenceCheck(), [frame])
    assert out.equals(frame)
    assert gaps.rows() == [("X", 3, 5, 2, "gap", 3)]
    assert gaps.columns == ["symbol", "expected", "got", "missing", "kind", "ts_event"]


async def test_repeats_and_gaps_are_found_across_frames() -> None:
    op = SequenceCheck()
    _, gaps = await check(op, [trades(["X", "X"], [1, 2]), trades(["X", "X", "X"], [2, 4, 3])])
    assert gaps.select("expected", "got", "kind").rows() == [(3, 2, "repeat"), (3, 4, "gap"), (5, 3, "repeat")]
    assert op.stats() == {"gaps": 1, "missing": 1, "repeats": 2, "unparsable": 0, "keys": 1}


async def test_trade_ids_as_strings_are_checked_and_unparsable_ones_counted() -> None:
    frame = trades(["X", "X", "X", "X"], ["100", "101", "A-7", "103"], column="trade_id")
    op = SequenceCheck(column="trade_id")
    _, gaps = await check(op, [frame])
    assert gaps.select("expected", "got", "missing").rows() == [(102, 103, 1)]
    assert op.stats()["unparsable"] == 1


async def test_increasing_numbers_report_only_repeats_when_not_contiguous() -> None:
    _, gaps = await check(SequenceCheck(contiguous=False), [trades(["X"] * 4, [10, 50, 50, 70])])
    assert gaps.select("got", "kind").rows() == [(50, "repeat")]


async def test_the_key_may_have_several_columns() -> None:
    frame = trades(["X", "X", "X"], [1, 1, 2]).with_columns(venue=pl.Series(["a", "b", "a"]))
    _, gaps = await check(SequenceCheck(key=["venue", "symbol"]), [frame])
    assert gaps.height == 0


async def test_snapshot_and_restore_keep_the_last_number_per_key() -> None:
    op = SequenceCheck()
    await check(op, [trades(["X"], [7])])
    resumed = SequenceCheck()
    resumed.restore(op.snapshot())
    _, gaps = await check(resumed, [trades(["X"], [9])])
    assert gaps.select("expected", "got").rows() == [(8, 9)]


def test_params_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        SequenceCheckParams.model_validate({"column": "seq", "step": 2})
    with pytest.raises(ConfigError):
        SequenceCheck(key=[])
    assert SequenceCheck.from_params(SequenceCheckParams(column="trade_id")).column == "trade_id"


@settings(max_examples=50, deadline=None)
@given(
    ids=st.lists(st.integers(1, 40), min_size=1, max_size=80),
    cut=st.integers(1, 30),
)
def test_counts_match_a_plain_loop_over_the_numbers_however_frames_are_cut(ids: list[int], cut: int) -> None:
    import asyncio

    frames = [trades(["X"] * len(ids[i : i + cut]), ids[i : i + cut]) for i in range(0, len(ids), cut)]
    op = SequenceCheck()
    _, gaps = asyncio.run(check(op, frames))
    running = [max(ids[: i + 1]) for i in range(len(ids))]
    jumps = sum(max(0, ids[i] - running[i - 1] - 1) for i in range(1, len(ids)))
    assert op.stats()["missing"] == jumps
    assert op.stats()["repeats"] == sum(1 for i in range(1, len(ids)) if ids[i] <= running[i - 1])
    assert gaps.height == op.stats()["gaps"] + op.stats()["repeats"]
