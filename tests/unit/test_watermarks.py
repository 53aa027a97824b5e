"""The source watermark rule: lateness is exact per row, whatever the frame cuts."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.runtime.operator import NO_WATERMARK
from mdp.runtime.watermarks import WatermarkTracker


def per_row_late(ts: list[int], bound: int) -> list[bool]:
    """The reference: late iff older than (largest earlier ts - bound)."""
    seen, late = NO_WATERMARK, []
    for t in ts:
        late.append(seen != NO_WATERMARK and t < seen - bound)
        seen = max(seen, t)
    return late


def late_as_operators_see_it(ts: list[int], bound: int, cuts: list[int]) -> list[bool]:
    """Cut the stream into frames, apply the tracker, and judge each row by the watermark in force."""
    tracker = WatermarkTracker(bound)
    arr = np.asarray(ts, dtype=np.int64)
    edges = sorted({0, len(ts), *(c for c in cuts if 0 < c < len(ts))})
    in_force, late = NO_WATERMARK, []
    for a, b in itertools.pairwise(edges):
        for piece in tracker.pieces(arr[a:b]):
            in_force = max(in_force, piece.watermark_before)
            late.extend(bool(t < in_force) for t in arr[a + piece.start : a + piece.stop])
        in_force = max(in_force, tracker.watermark)
    return late


@settings(max_examples=300, deadline=None)
@given(
    ts=st.lists(st.integers(min_value=0, max_value=1_000), max_size=80),
    bound=st.integers(min_value=0, max_value=50),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
)
def test_lateness_is_exact_per_row_whatever_the_frame_cuts(ts: list[int], bound: int, cuts: list[int]) -> None:
    assert late_as_operators_see_it(ts, bound, cuts) == per_row_late(ts, bound)


def test_in_order_rows_come_out_as_one_piece() -> None:
    tracker = WatermarkTracker(5)
    pieces = tracker.pieces(np.arange(0, 100, dtype=np.int64))
    assert len(pieces) == 1
    assert tracker.watermark == 99 - 5
