"""Sources snapshot and restore exactly: stopped after any message, snapshotted to bytes and restored on a
fresh source, a source goes on so that both halves together equal one uninterrupted run (every row on
``out`` and ``deadletter`` once, in order, the same watermarks, counters and stats continuing)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdp.clock import Clock, ManualClock
from mdp.durations import parse_time
from mdp.runtime.operator import Source
from mdp.runtime.snapshots import decode_state
from mdp.sources import replay as replay_module
from mdp.sources.pacing import cut_frames
from mdp.sources.replay import ReplaySource
from mdp.sources.synthetic import SyntheticSource
from mdp.stores import SqliteStore, StoreSource
from mdp.stores.samples import sample_bars, sample_trades
from mdp.testing import SourceHarness, outputs_equal, run_source_with_restore

START = parse_time("2024-01-02T14:30:00Z")
T0 = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z
EXAMPLES = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class SteppingClock(ManualClock):
    """A manual clock whose sleeps move it on at once: paced sources run in no wall time, deterministically."""

    async def sleep(self, seconds: float) -> None:
        self.set_ns(self.now_ns() + max(round(seconds * 1_000_000_000), 1))
        await asyncio.sleep(0)


def check_round_trip(
    build: Callable[[], Source], cut: float, clock: Callable[[], Clock] | None = None
) -> tuple[SourceHarness, SourceHarness, SourceHarness]:
    """Stop a run at fraction ``cut`` of the messages of an uninterrupted one, restore, run the rest;
    assert both halves equal the uninterrupted run, in output and in stats."""
    total = len(asyncio.run(_whole(build, clock)).sent)
    stop_after = max(1, round(cut * total))
    whole, first, second = asyncio.run(run_source_with_restore(build, stop_after, clock))
    assert outputs_equal(whole.sent, first.sent + second.sent)
    assert whole.source.stats() == second.source.stats()
    assert whole.ctx.counters == second.ctx.counters
    return whole, first, second


async def _whole(build: Callable[[], Source], clock: Callable[[], Clock] | None) -> SourceHarness:
    harness = SourceHarness(build(), clock() if clock else ManualClock())
    await harness.run()
    return harness


def near_start() -> Clock:
    return ManualClock(START)


@settings(max_examples=60, deadline=None)
@given(
    blocks=st.lists(st.integers(0, 40), max_size=12),
    frame_rows=st.integers(1, 17),
    done=st.integers(0, 100),
)
def test_cut_frames_after_done_rows_ends_each_frame_where_one_run_would(
    blocks: list[int], frame_rows: int, done: int
) -> None:
    start = 0
    frames = []
    for n in blocks:
        frames.append(pl.DataFrame({"i": np.arange(start, start + n)}))
        start += n
    out = list(cut_frames(frames, frame_rows, done))
    assert all(f.height > 0 for f in out)
    ends = np.cumsum([f.height for f in out]) + done
    assert all(end % frame_rows == 0 for end in ends[:-1])
    assert (pl.concat(out).get_column("i").to_list() if out else []) == list(range(start))


# -- source.synthetic -----------------------------------------------------------------------------------


@EXAMPLES
@given(
    cut=st.floats(0.0, 1.0),
    kind=st.sampled_from(["trade", "quote"]),
    disorder=st.sampled_from([0.0, 0.3]),
    bad_fraction=st.sampled_from([0.0, 0.1]),
    watermark=st.sampled_from(["global", "per_key"]),
    frame_rows=st.integers(7, 300),
)
def test_synthetic_resumes_exactly_after_a_stop_anywhere(
    cut: float, kind: str, disorder: float, bad_fraction: float, watermark: str, frame_rows: int
) -> None:
    def build() -> Source:
        return SyntheticSource(
            symbols=6,
            rate=1_500,
            duration="1s",
            seed=11,
            kind=kind,  # type: ignore[arg-type]
            frame_rows=frame_rows,
            disorder=disorder,
            max_delay="50ms",
            max_out_of_orderness="10ms",
            bad_fraction=bad_fraction,
            max_bad_share=None,
            watermark=watermark,  # type: ignore[arg-type]
        )

    check_round_trip(build, cut, near_start)


def test_a_synthetic_feed_in_several_blocks_is_skipped_to_its_position(monkeypatch: pytest.MonkeyPatch) -> None:
    """The feed is generated again and the rows before the position dropped, across internal blocks."""
    from mdp.sources import synthetic

    monkeypatch.setattr(synthetic, "BLOCK_ROWS", 100)

    def build() -> Source:
        return SyntheticSource(
            symbols=4, rate=1_000, duration="1s", seed=2, frame_rows=64, disorder=0.2, bad_fraction=0.05
        )

    for cut in (0.1, 0.5, 0.9):
        _, first, second = check_round_trip(build, cut, near_start)
        position = decode_state(first.snapshot())["operator"]["position"]
        assert 100 < position["good"] < 1_000  # past the first internal block, not at the end
        assert second.source.stats()["rows_emitted"] > first.source.stats()["rows_emitted"]


@EXAMPLES
@given(cut=st.floats(0.0, 1.0), idle=st.sampled_from([None, "30ms"]), watermark=st.sampled_from(["global", "per_key"]))
def test_a_paced_synthetic_feed_stopped_mid_frame_resumes_exactly(cut: float, idle: str | None, watermark: str) -> None:
    """Paced, a frame goes out in slices and a stop can cut it; idle timeouts move watermarks by the clock."""

    def build() -> Source:
        return SyntheticSource(
            symbols=["A", "B", "C"],
            rate=400,
            duration="1s",
            seed=5,
            speed=1.0,
            frame_rows=150,
            skew=2.0,
            max_out_of_orderness="5ms",
            watermark=watermark,  # type: ignore[arg-type]
            idle_timeout=idle,
        )

    check_round_trip(build, cut, lambda: SteppingClock(START))


def test_a_stop_while_pacing_cuts_a_frame_and_the_rest_of_it_goes_out_after_the_restore() -> None:
    def build() -> Source:
        return SyntheticSource(symbols=2, rate=400, duration="1s", seed=5, speed=1.0, frame_rows=150)

    _, first, second = check_round_trip(build, 0.3, lambda: SteppingClock(START))
    sent = first.source.stats()["rows_emitted"]
    assert sent % 150  # the frame went out in part
    out = [item.height for port, item in second.sent if port == "out"]
    assert sum(out) == 400 - sent


def test_the_snapshot_is_plain_values_naming_the_position() -> None:
    def build() -> Source:
        return SyntheticSource(symbols=3, rate=1_000, duration="1s", seed=1, frame_rows=100)

    _, first, _ = asyncio.run(run_source_with_restore(build, 4, near_start))
    state = decode_state(first.snapshot())["operator"]
    assert state["position"]["good"] == first.source.stats()["rows_emitted"] == 200  # two frames went out
    assert first.source.stats()["offset"] == 1_000  # the whole feed was generated ahead: read, not delivered


# -- source.replay --------------------------------------------------------------------------------------


def trade_file(tmp_path: Path, suffix: str, rows: int, seed: int, *, disorder_ms: int = 0) -> Path:
    """A trade file of ``rows`` data rows with bad ones (bad numbers, blank symbols, negative prices) and,
    as text, malformed lines that do not split into the header's columns."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(rows) * 10_000_000 - rng.integers(0, disorder_ms + 1, rows) * 1_000_000
    price = np.round(100 + rng.standard_normal(rows), 2).astype(str).astype(object)
    sym = rng.choice(["AAA", "BBB", "CCC"], rows).astype(object)
    bad = rng.random(rows) < 0.1
    which = rng.integers(0, 3, rows)
    price[bad & (which == 0)] = "n/a"
    price[bad & (which == 1)] = "-3.5"
    sym[bad & (which == 2)] = " "
    frame = pl.DataFrame({"ts_ns": ts, "sym": sym.tolist(), "px": price.tolist(), "qty": rng.integers(1, 9, rows)})
    path = tmp_path / f"trades_{seed}{suffix}"
    if suffix == ".parquet":
        clean = frame.with_columns(pl.col("px").cast(pl.Float64, strict=False))
        clean.write_parquet(path, row_group_size=37)
        return path
    lines = frame.write_csv().splitlines(keepends=True)
    for at in sorted(rng.choice(np.arange(2, len(lines)), size=max(1, rows // 40), replace=False), reverse=True):
        lines.insert(int(at), "this,line,has,too,many,fields\n")
    text = "".join(lines).encode()
    path.write_bytes(gzip.compress(text) if suffix == ".csv.gz" else text)
    return path


MAP = {"ts_event": "ts_ns", "symbol": "sym", "price": "px", "size": "qty"}


@EXAMPLES
@given(
    cut=st.floats(0.0, 1.0),
    suffix=st.sampled_from([".csv", ".csv.gz", ".parquet"]),
    frame_rows=st.integers(3, 60),
    bound_ms=st.sampled_from([0, 20]),
    seed=st.integers(0, 3),
)
def test_replay_resumes_exactly_after_a_stop_anywhere(
    tmp_path: Path, cut: float, suffix: str, frame_rows: int, bound_ms: int, seed: int
) -> None:
    path = trade_file(tmp_path, suffix, 300, seed, disorder_ms=30)

    def build() -> Source:
        return ReplaySource(
            path=path,
            columns=MAP,
            frame_rows=frame_rows,
            max_out_of_orderness=bound_ms * 1_000_000,
            max_bad_share=None,
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(replay_module, "CSV_BLOCK_BYTES", 1 << 10)  # several Arrow batches to skip
        whole, _, _ = check_round_trip(build, cut, lambda: ManualClock(T0))
    assert any(port == "deadletter" for port, _ in whole.sent)


def quote_file(tmp_path: Path, suffix: str, rows: int, seed: int) -> Path:
    """A one-sided quote file (TAQ style: a row carries a bid or an ask, the other side 0) with crossed and
    empty rows."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(rows) * 5_000_000 - rng.integers(0, 12, rows) * 1_000_000
    bid = np.round(100 + rng.standard_normal(rows), 2)
    ask = np.round(bid + rng.integers(1, 4, rows) * 0.01, 2)
    side = rng.integers(0, 4, rows)  # 0: bid only, 1: ask only, 2: both, 3: both crossed
    ask = np.where(side == 3, bid - 0.05, ask)
    frame = pl.DataFrame(
        {
            "ts": ts,
            "sym": rng.choice(["X", "Y"], rows).tolist(),
            "bid": np.where(side == 1, 0.0, bid),
            "bsz": np.where(side == 1, 0, rng.integers(1, 9, rows)),
            "ask": np.where(side == 0, 0.0, ask),
            "asz": np.where(side == 0, 0, rng.integers(1, 9, rows)),
        }
    )
    path = tmp_path / f"quotes_{seed}{suffix}"
    if suffix == ".parquet":
        frame.write_parquet(path, row_group_size=29)
    else:
        text = frame.write_csv().encode()
        path.write_bytes(gzip.compress(text) if suffix == ".csv.gz" else text)
    return path


@EXAMPLES
@given(
    cut=st.floats(0.0, 1.0),
    suffix=st.sampled_from([".csv", ".csv.gz", ".parquet"]),
    frame_rows=st.integers(3, 40),
    watermark=st.sampled_from(["global", "per_key"]),
)
def test_a_quote_replay_resumes_exactly_after_a_stop_anywhere(
    tmp_path: Path, cut: float, suffix: str, frame_rows: int, watermark: str
) -> None:
    path = quote_file(tmp_path, suffix, 200, 4)

    def build() -> Source:
        return ReplaySource(
            path=path,
            kind="quote",
            columns={"ts_event": "ts", "symbol": "sym", "bid_size": "bsz", "ask_size": "asz"},
            one_sided_quotes=True,
            frame_rows=frame_rows,
            max_out_of_orderness="8ms",
            max_bad_share=None,
            watermark=watermark,  # type: ignore[arg-type]
        )

    whole, _, _ = check_round_trip(build, cut, lambda: ManualClock(T0))
    assert any(port == "deadletter" for port, _ in whole.sent)  # the crossed quotes


@EXAMPLES
@given(cut=st.floats(0.0, 1.0), watermark=st.sampled_from(["global", "per_key"]))
def test_a_paced_replay_stopped_mid_frame_resumes_exactly(tmp_path: Path, cut: float, watermark: str) -> None:
    path = trade_file(tmp_path, ".csv", 120, 9)

    def build() -> Source:
        return ReplaySource(
            path=path,
            columns=MAP,
            frame_rows=50,
            speed=1.0,
            max_bad_share=None,
            watermark=watermark,  # type: ignore[arg-type]
            idle_timeout="15ms",
        )

    check_round_trip(build, cut, lambda: SteppingClock(T0))


# -- source.store ---------------------------------------------------------------------------------------


@EXAMPLES
@given(cut=st.floats(0.0, 1.0), kind=st.sampled_from(["bar", "trade"]), batch_rows=st.integers(1, 9))
def test_store_source_resumes_exactly_after_a_stop_anywhere(
    tmp_path: Path, cut: float, kind: str, batch_rows: int
) -> None:
    path = tmp_path / f"{kind}.sqlite"
    if not path.exists():
        with SqliteStore(path) as store:
            store.write(kind, sample_bars(30) if kind == "bar" else sample_trades(40))  # type: ignore[arg-type]

    def build() -> Source:
        return StoreSource(store="sqlite", path=str(path), kind=kind, batch_rows=batch_rows, max_out_of_orderness=0)

    check_round_trip(build, cut)
