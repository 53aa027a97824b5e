"""The run summary counts every row a node left out, by reason (issue 15, item 7)."""

from __future__ import annotations

import polars as pl

from mdp.app.summary import RunSummary, describe_failure, excluded_rows
from mdp.errors import NodeError
from mdp.operators.bars import BarsOperator
from mdp.operators.market.dedupe import Dedupe
from mdp.operators.market.throttle import Throttle
from mdp.records import Watermark, conform
from mdp.runtime.runtime import RunStats
from mdp.testing import run_operator

S = 1_000_000_000
OPEN = 1_723_123_800 * S  # Thursday 2024-08-08 09:30 New York


def trades(*rows: tuple[str, int, int]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=["symbol", "ts_event", "trade_id"], orient="row")
    return conform(frame.with_columns(pl.lit(10.0).alias("price"), pl.lit(1.0).alias("size")), "trade")


def test_excluded_rows_are_summed_by_reason_from_the_nodes_stats() -> None:
    bars = BarsOperator(timeframe="1h", calendar="XNYS")
    feed = trades(("X", OPEN - 60 * S, 1), ("X", OPEN + S, 2), ("X", OPEN + 2 * S, 3))
    run_operator(bars, [feed, Watermark(OPEN + 10 * S), trades(("X", OPEN + 3 * S, 4))])  # the last one late
    dedupe = Dedupe(key=["symbol", "trade_id"])
    run_operator(dedupe, [trades(("X", 1, 1), ("X", 2, 1), ("X", 3, 2))])
    throttle = Throttle(rate=1, burst=1)
    run_operator(throttle, [trades(("X", 1, 1), ("X", 2, 2), ("X", 3, 3))])
    source = {"bad_records": 2, "bad_reasons": {"non_positive_price": 2}}
    assert excluded_rows([bars.stats(), dedupe.stats(), throttle.stats(), source]) == {
        "dead_letter:non_positive_price": 2,
        "duplicate": 1,
        "late_dropped": 1,
        "outside_session": 1,
        "throttled": 2,
    }


def test_a_failed_node_is_told_in_one_paragraph_even_when_its_error_has_more() -> None:
    """polars 2.2 appends paragraphs quoting the failing expression to its errors; mdp keeps the first."""
    cause = pl.exceptions.ColumnNotFoundError('unable to find column "px"\n\nThis error occurred in ...\n\tcol("px")')
    code, message = describe_failure(
        NodeError("cents", cause), ("operator.map", "dag.nodes[1]"), RunStats(), RunSummary("j", rows_in=8)
    )
    assert code == 1
    assert message == (
        "job 'j' failed: node 'cents' (operator.map at dag.nodes[1]) raised ColumnNotFoundError: "
        'unable to find column "px" (after 8 rows in and 0 bars out, 0.0s)'
    )
