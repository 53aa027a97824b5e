"""``Dedupe``: drop repeated rows by key within a bounded event-time horizon, and merge A/B feeds.

A row is a repeat when a row with the same key columns has already passed within the horizon. Keys are
remembered by event time: once the watermark has passed ``ts_event + horizon`` a key is forgotten, so
memory is bounded by the keys of one horizon (plus the watermark lag), never by the length of the stream.

A row that arrives with ``ts_event < watermark - horizon`` is *expired*: its twin may already have been
forgotten, so it cannot be checked. ``expired`` says what happens to it (``drop`` by default, counted,
or ``pass`` it unchecked, or ``side_output`` it on port ``expired``). Never silently.

A/B feeds: connect both redundant feeds to the node (two edges). The runtime merges them, the node's
watermark is the minimum over both, and each trade comes out once, from whichever feed delivered it
first. ``stats()["duplicates_by_input"]`` shows how many rows each feed lost the race with.

How keys are held: each key is reduced to a 64-bit hash of its columns (``DataFrame.hash_rows``),
kept in sorted numpy runs per time bucket and looked up with ``searchsorted``: a few bytes per key and
no Python loop per row. Two different keys share a hash with probability about ``n·m/2^64`` for ``n``
rows checked against ``m`` keys held (5e-7 for 10M rows against 1M keys); such a unique row would be
taken for a repeat. Inputs must give the key columns the same dtypes (canonical frames do).

Example::

    >>> import polars as pl
    >>> from mdp.testing import run_operator
    >>> a = pl.DataFrame({"symbol": ["X", "X", "Y"], "trade_id": ["1", "2", "1"], "ts_event": [1, 2, 3]})
    >>> b = pl.DataFrame({"symbol": ["X", "Z"], "trade_id": ["2", "9"], "ts_event": [2, 4]})
    >>> out = run_operator(Dedupe(key=["symbol", "trade_id"], horizon="1m"), [a, b])
    >>> [f.height for f in out]
    [3, 1]
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs
from mdp.errors import ConfigError, MdpError
from mdp.runtime.operator import NO_WATERMARK, Context, Operator

_HASH_SEED = 0x6D6470  # fixed so the same key hashes alike on every input and after a restore
_MIN_BUCKET_NS = 1_000_000


class DedupeParams(BaseModel):
    """Config of ``operator.dedupe``."""

    model_config = ConfigDict(extra="forbid")

    key: list[str] = Field(
        default_factory=lambda: ["symbol", "ts_event", "seq"],
        min_length=1,
        description="columns that identify a row, e.g. [symbol, trade_id] or [symbol, ts_event, price, size, venue]",
    )
    horizon: DurationNs = Field(default=60_000_000_000, description="how long (event time) a key is remembered")
    expired: Literal["drop", "pass", "side_output"] = Field(
        default="drop", description="rows older than watermark - horizon: drop, pass unchecked, or port 'expired'"
    )
    time_column: str = Field(default="ts_event", description="the event-time column (int ns)")


def _found(needles: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """Which of the sorted ``needles`` occur in any of the sorted ``runs``."""
    found = np.zeros(len(needles), dtype=bool)
    for run in runs:
        pos = np.searchsorted(run, needles)
        np.minimum(pos, len(run) - 1, out=pos)
        found |= run[pos] == needles
    return found


def _distinct(values: np.ndarray) -> list[int]:
    """The distinct values of an int array, ascending (a bincount when they span little, as buckets do)."""
    if len(values) == 0:
        return []
    low, high = int(values.min()), int(values.max())
    if high - low < 4096:
        return (np.flatnonzero(np.bincount(values - low)) + low).tolist()  # type: ignore[no-any-return]
    return np.unique(values).tolist()  # type: ignore[no-any-return]


class _KeyRuns:
    """Sets of uint64 hashes per time bucket, each a list of sorted runs merged like an LSM tree."""

    def __init__(self) -> None:
        self.buckets: dict[int, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return sum(len(r) for runs in self.buckets.values() for r in runs)

    def contains(self, hashes: np.ndarray, buckets: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask: which of ``hashes`` (sorted ascending) are held.

        ``buckets`` (the bucket of each hash) limits each lookup to its own bucket: right when the time
        column is part of the key, since a repeat then has the same event time.
        """
        if buckets is None:
            return _found(hashes, [run for runs in self.buckets.values() for run in runs])
        found = np.zeros(len(hashes), dtype=bool)
        for bucket in _distinct(buckets):
            if bucket in self.buckets:
                sel = buckets == bucket
                found[sel] = _found(hashes[sel], self.buckets[bucket])
        return found

    def add(self, bucket: int, hashes: np.ndarray) -> None:
        """Add sorted unique ``hashes`` to ``bucket``; merge runs so a bucket keeps O(log n) of them."""
        runs = self.buckets.setdefault(bucket, [])
        runs.append(hashes)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()  # runs are disjoint: a stable sort of two sorted runs is one linear merge
            runs[-1] = np.sort(np.concatenate([runs[-1], last]), kind="stable")

    def prune(self, below_bucket: int) -> None:
        """Forget every bucket numbered below ``below_bucket``."""
        for bucket in [b for b in self.buckets if b < below_bucket]:
            del self.buckets[bucket]


class Dedupe(Operator):
    """Emit each key once within ``horizon`` of event time; count and drop the repeats.

    Args:
        key: columns that identify a row.
        horizon: how long after a row's event time (behind the watermark) its key is remembered: int ns
            or a duration such as ``"5s"`` (in YAML a bare number is seconds).
        expired: what to do with a row older than ``watermark - horizon``: ``drop``, ``pass``, or
            ``side_output`` on port ``expired`` (which must then be connected).
        time_column: the event-time column.
    """

    Params = DedupeParams
    outputs = ("out", "expired")

    def __init__(
        self,
        key: list[str] | None = None,
        horizon: int | str = "1m",
        expired: Literal["drop", "pass", "side_output"] = "drop",
        time_column: str = "ts_event",
    ) -> None:
        try:
            params = DedupeParams.model_validate(
                {
                    "key": ["symbol", "ts_event", "seq"] if key is None else key,
                    "horizon": f"{horizon}ns" if isinstance(horizon, int) else horizon,
                    "expired": expired,
                    "time_column": time_column,
                }
            )
        except ValidationError as exc:
            raise ConfigError(f"operator.dedupe: {exc}") from exc
        self.key = params.key
        self.horizon = params.horizon
        self.expired = params.expired
        self.time_column = params.time_column
        # buckets a quarter of the horizon wide: memory held is at most 1.25 horizons past the watermark
        self.bucket_ns = max(self.horizon // 4, _MIN_BUCKET_NS)
        self._keys = _KeyRuns()
        self.duplicates = 0
        self.expired_rows = 0
        self.passed = 0
        self.duplicates_by_input: dict[str, int] = {}

    async def open(self, ctx: Context) -> None:
        if self.expired == "side_output" and not ctx.connected("expired"):
            raise MdpError(
                f"dedupe {ctx.node!r}: expired='side_output' needs an edge from port 'expired'; "
                "connect it or choose expired='drop'"
            )

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        missing = [c for c in [*self.key, self.time_column] if c not in frame.columns]
        if missing:
            raise MdpError(f"dedupe {ctx.node!r}: the frame lacks the key columns {missing}; it has {frame.columns}")
        ts = frame.get_column(self.time_column).to_numpy()
        cutoff = self._cutoff(ctx.watermark)
        if cutoff is not None and (old := ts < cutoff).any():
            await self._expire(frame.filter(pl.Series(old)), ctx)
            frame, ts = frame.filter(pl.Series(~old)), ts[~old]
            if frame.height == 0:
                return
        hashes = frame.select(self.key).hash_rows(seed=_HASH_SEED).to_numpy()
        order = np.argsort(hashes, kind="stable")
        sorted_h = hashes[order]
        fresh_sorted = np.ones(len(sorted_h), dtype=bool)
        fresh_sorted[1:] = sorted_h[1:] != sorted_h[:-1]  # first arrival of each key inside the frame
        buckets = (ts // self.bucket_ns)[order]
        fresh_sorted &= ~self._keys.contains(sorted_h, buckets if self.time_column in self.key else None)
        keep = np.empty(len(hashes), dtype=bool)
        keep[order] = fresh_sorted
        dropped = len(hashes) - int(keep.sum())
        if dropped:
            self.duplicates += dropped
            name = ctx.input or "in"
            self.duplicates_by_input[name] = self.duplicates_by_input.get(name, 0) + dropped
            ctx.count("duplicates", dropped)
        kept_h, kept_b = sorted_h[fresh_sorted], buckets[fresh_sorted]
        for bucket in _distinct(kept_b):
            self._keys.add(bucket, kept_h[kept_b == bucket])  # a subset of a sorted array: still sorted
        out = frame if not dropped else frame.filter(pl.Series(keep))
        self.passed += out.height
        if out.height:
            await ctx.emit(out)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        cutoff = self._cutoff(watermark)
        if cutoff is not None:
            # a bucket goes once every key in it is older than watermark - horizon
            self._keys.prune(cutoff // self.bucket_ns)
        await ctx.emit_watermark(watermark)

    def _cutoff(self, watermark: int) -> int | None:
        if watermark == NO_WATERMARK:
            return None
        return max(watermark - self.horizon, NO_WATERMARK)

    async def _expire(self, rows: pl.DataFrame, ctx: Context) -> None:
        self.expired_rows += rows.height
        ctx.count("expired", rows.height)
        if self.expired == "pass":
            self.passed += rows.height
            await ctx.emit(rows)
        elif self.expired == "side_output":
            await ctx.emit(rows, "expired")

    @property
    def keys_held(self) -> int:
        """How many key hashes are remembered now (bounded by the horizon)."""
        return len(self._keys)

    def stats(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "duplicates": self.duplicates,
            "expired": self.expired_rows,
            "keys_held": self.keys_held,
            "duplicates_by_input": dict(self.duplicates_by_input),
        }

    def snapshot(self) -> dict[str, Any]:
        """The remembered keys and counters (numpy arrays; picklable). Hashes are polars-version bound."""
        return {
            "hash": f"polars-{pl.__version__}",
            "buckets": {
                b: np.concatenate(runs) if len(runs) > 1 else runs[0].copy() for b, runs in self._keys.buckets.items()
            },
            "counters": {"duplicates": self.duplicates, "expired": self.expired_rows, "passed": self.passed},
            "duplicates_by_input": dict(self.duplicates_by_input),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        if state["hash"] != f"polars-{pl.__version__}":
            raise MdpError(
                f"dedupe state was hashed by {state['hash']} but this process runs polars-{pl.__version__}; "
                "key hashes are only stable within one polars version, restart without this state"
            )
        self._keys = _KeyRuns()
        for bucket, hashes in state["buckets"].items():
            self._keys.buckets[int(bucket)] = [np.sort(np.asarray(hashes, dtype=np.uint64))]
        counters = state["counters"]
        self.duplicates, self.expired_rows, self.passed = (
            counters["duplicates"],
            counters["expired"],
            counters["passed"],
        )
        self.duplicates_by_input = dict(state["duplicates_by_input"])
