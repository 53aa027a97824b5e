"""``Throttle``: per-key token buckets that cap rows per second, in event time or processing time.

Each key has a bucket of ``burst`` tokens refilled at ``rate`` per second; a row takes one. The buckets
run GCRA in integer ns with the refill interval rounded up, so in any span of ``d`` seconds at most
``rate * d + burst`` rows of a key go out. A row without a token is dropped (``drop``), waits as the
key's newest row until the next token, replaced by newer ones (``keep_last``: conflation), or waits for
its own token (``delay``: nothing dropped, the queue grows under sustained overload).

``time: event`` (default) runs on ``ts_event``: rows are taken in ``(ts_event, seq)`` order once the
watermark passes them, so a replay gives the same output however it was cut into frames.
``time: processing`` runs on the operator's clock, for protecting a live consumer; one runtime timer
(``ctx.notify_at``) waits for the next token, never one per row. The watermark sent on is held back to
the oldest waiting row.
Decisions are vectorised for all keys in lockstep: a run of rows that all find a token is settled by one
cumulative maximum, a run that finds none is skipped by one ``searchsorted`` (docs/operators.md).

Example::

    >>> import polars as pl
    >>> from mdp.testing import run_operator
    >>> ms = 1_000_000
    >>> rows = pl.DataFrame({"symbol": ["X"] * 5, "ts_event": [0, 10 * ms, 20 * ms, 600 * ms, 1200 * ms]})
    >>> out = run_operator(Throttle(rate=2, burst=1), [rows])  # 2 rows/s: one every 500 ms
    >>> [t // ms for f in out for t in f["ts_event"]]
    [0, 600, 1200]
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.errors import ConfigError
from mdp.records import END_OF_TIME
from mdp.runtime.operator import NO_WATERMARK, Context, Operator
from mdp.timers import TimeDomain

_KID, _ORD, _AT, _T = "__mdp_key", "__mdp_order", "__mdp_at", "__mdp_ts"
_NONE, _OLD = -2, -1  # per key: no waiting row / the waiting row from before this batch
_FAR_PAST = -(2**62)
_I64_MIN = np.iinfo(np.int64).min
_A = np.ndarray


class ThrottleParams(BaseModel):
    """Config of ``operator.throttle``."""

    model_config = ConfigDict(extra="forbid")

    key: list[str] = Field(default_factory=lambda: ["symbol"], min_length=1, description="one bucket per key")
    rate: float = Field(gt=0, description="tokens (rows) per second per key")
    burst: int = Field(default=1, ge=1, description="bucket size: rows that may go out at once")
    policy: Literal["drop", "keep_last", "delay"] = Field(default="drop", description="a row without a token")
    time: Literal["event", "processing"] = Field(default="event", description="bucket clock: ts_event or wall")
    release_column: str | None = Field(default=None, description="add the time (ns) each row went out")


def gcra(
    ts: _A, starts: _A, ends: _A, tat: _A, pend: _A, interval: int, tau: int, keep_last: bool, horizon: int
) -> tuple[_A, _A, _A, _A, _A]:
    """Run GCRA over rows ``ts`` sorted by time within segments ``[starts, ends)`` (one per key).

    ``tat`` (theoretical arrival time per key) and ``pend`` (waiting row per key: a row index, ``_OLD``
    or ``_NONE``) are updated in place. With ``keep_last`` a waiting row goes out when its token comes,
    if that is before ``horizon``. Returns (allowed row mask, conflated per key, released keys, released
    rows, release times).
    """
    n = len(ts)
    allowed, conflated = np.zeros(n, dtype=bool), np.zeros(len(starts), dtype=np.int64)
    released: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    uniq, rank = np.unique(ts, return_inverse=True)
    comp = np.repeat(np.arange(len(starts)), ends - starts) * (len(uniq) + 1) + rank  # sorted (key, time)
    cur, window = starts.copy(), 16
    active = np.flatnonzero((cur < ends) | ((pend != _NONE) & (tat - tau < horizon)))
    while active.size:
        head = ts[np.minimum(cur[active], n - 1)] if n else np.zeros(len(active), dtype=np.int64)
        free = (cur[active] < ends[active]) & (pend[active] == _NONE) & (head >= tat[active] - tau)
        a, b = active[free], active[~free]
        if a.size:  # a run of rows that all find a token: settled by one cumulative maximum
            offs = np.arange(window)
            idx = cur[a, None] + offs
            valid = idx < ends[a, None]
            w = ts[np.minimum(idx, n - 1)]
            t0 = tat[a, None]
            after = np.maximum(np.maximum.accumulate(np.where(valid, w - offs * interval, _I64_MIN), axis=1), t0)
            after += (offs + 1) * interval
            before = np.concatenate([t0, after[:, :-1]], axis=1)
            run = np.cumprod(valid & (w >= before - tau), axis=1).sum(axis=1)
            allowed[idx[offs < run[:, None]]] = True
            tat[a] = after[np.arange(a.size), run - 1]
            cur[a] += run
            window = min(window * 2, 1 << 14) if (run == window).any() else max(window // 2, 16)
        if b.size:  # rows without a token until the next one arrives at r: skipped by one searchsorted
            r = tat[b] - tau
            j = np.searchsorted(comp, b * (len(uniq) + 1) + np.searchsorted(uniq, r)) if n else cur[b]
            j = np.clip(j, cur[b], ends[b])
            if keep_last:
                waiting = j > cur[b]
                conflated[b] += np.where(waiting, j - cur[b] - 1 + (pend[b] != _NONE), 0)
                pend[b] = np.where(waiting, j - 1, pend[b])
                due = b[(pend[b] != _NONE) & (r < horizon)]
                released.append((due, pend[due].copy(), tat[due] - tau))
                tat[due] += interval
                pend[due] = _NONE
            cur[b] = j
        active = np.flatnonzero((cur < ends) | ((pend != _NONE) & (tat - tau < horizon)))
    if not released:
        empty = np.zeros(0, dtype=np.int64)
        return allowed, conflated, empty, empty, empty
    keys, rows, times = (np.concatenate(part) for part in zip(*released, strict=True))
    return allowed, conflated, keys, rows, times


class Throttle(Operator):
    """Cap each key at ``rate`` rows per second with bursts of ``burst`` (see the module docstring).

    Args:
        rate: tokens per second per key.
        burst: bucket size.
        key: columns of one bucket.
        policy: ``drop``, ``keep_last`` or ``delay`` for a row without a token.
        time: ``event`` (``ts_event``, deterministic in replay) or ``processing`` (the operator's clock).
        release_column: if set, a column with the time (ns) each row went out.
    """

    Params = ThrottleParams

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        key: list[str] | None = None,
        policy: Literal["drop", "keep_last", "delay"] = "drop",
        time: Literal["event", "processing"] = "event",
        release_column: str | None = None,
    ) -> None:
        values = dict(key=key, rate=rate, burst=burst, policy=policy, time=time, release_column=release_column)
        try:
            p = ThrottleParams.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise ConfigError(f"operator.throttle: {exc}") from exc
        self.key, self.rate, self.burst, self.policy, self.time = p.key, p.rate, p.burst, p.policy, p.time
        self.release_column = release_column
        self.interval = math.ceil(1e9 / p.rate)  # rounded up: never faster than rate
        self.tau = (p.burst - 1) * self.interval
        self._keys: pl.DataFrame | None = None  # key columns -> _KID
        self._tat = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros((4, 0), dtype=np.int64)  # passed, dropped, conflated, delayed per key
        self._buffer: list[pl.DataFrame] = []  # event time: rows the watermark has not passed yet
        self._held: pl.DataFrame | None = None  # waiting rows: keep_last one per key, delay a queue with _AT
        self._arrivals = 0

    @property
    def wants_timers(self) -> bool:
        """Only a processing-time throttle that holds rows back waits for its clock."""
        return self.time == "processing" and self.policy != "drop"

    async def on_frame(self, frame: pl.DataFrame, ctx: Context) -> None:
        if frame.height == 0:
            return
        tagged = self._tag(frame)
        if self.time == "event":
            if ctx.watermark != NO_WATERMARK and (late := int((frame["ts_event"] < ctx.watermark).sum())):
                ctx.count("late", late)
            self._buffer.append(tagged)
            return
        now = ctx.clock.now_ns()
        if self._held is not None and self._held.height:
            await self._step(self._empty(), now, ctx)  # tokens that came since the last frame go first
        await self._step(tagged, now, ctx)
        self._ask_for_next_token(ctx)

    async def on_timer(self, ts: int, domain: TimeDomain, ctx: Context) -> None:
        """Processing time: a waiting row's token may have come; release what is due, wait for the next."""
        due = self._next_due()
        if due is not None and due <= ctx.clock.now_ns():
            await self._step(self._empty(), ctx.clock.now_ns(), ctx)
            await self._forward(ctx)
        self._ask_for_next_token(ctx)

    def _ask_for_next_token(self, ctx: Context) -> None:
        if self.wants_timers and (due := self._next_due()) is not None:
            ctx.notify_at(due)

    async def on_watermark(self, watermark: int, ctx: Context) -> None:
        if self.time == "event" and self._buffer:
            rows = pl.concat(self._buffer, how="vertical_relaxed")
            ready = pl.col("ts_event") < watermark if watermark < END_OF_TIME else pl.lit(True)
            self._buffer = [rows.filter(~ready)]
            await self._step(rows.filter(ready), None, ctx, horizon=watermark)
        elif self.time == "event" and self._held is not None:
            await self._step(self._empty(), None, ctx, horizon=watermark)
        await self._forward(ctx)

    async def on_close(self, ctx: Context) -> None:
        while self.time == "processing" and (due := self._next_due()) is not None:
            wait = due - ctx.clock.now_ns()
            if wait > 0:
                await ctx.clock.sleep(wait / 1e9)  # waiting rows still go out at their token's time
            await self._step(self._empty(), ctx.clock.now_ns(), ctx)
        await self._forward(ctx)

    async def _step(self, ready: pl.DataFrame, now: int | None, ctx: Context, horizon: int | None = None) -> None:
        """Run ``ready`` rows through the buckets at event time (``now`` None) or at ``now``; emit what goes."""
        horizon = now + 1 if now is not None else horizon
        assert horizon is not None
        if self.time == "event":
            order = [_KID, "ts_event", *(["seq"] if "seq" in ready.columns else []), _ORD]
            ready = ready.sort(order, maintain_order=True)
        else:
            ready = ready.sort([_KID, _ORD])
        clock = pl.col("ts_event") if now is None else pl.lit(now, dtype=pl.Int64)
        ready = ready.with_columns(clock.alias(_T))
        out = self._delay(ready, horizon) if self.policy == "delay" else self._buckets(ready, horizon)
        if out.height:
            out = out.sort([_AT, _ORD])
            np.add.at(self._counts[0], out[_KID].to_numpy(), 1)
            ctx.count("passed", out.height)
            keep = [c for c in out.columns if not c.startswith("__mdp_")]
            cols = [*keep, *([pl.col(_AT).alias(self.release_column)] if self.release_column else [])]
            await ctx.emit(out.select(cols))

    def _buckets(self, ready: pl.DataFrame, horizon: int) -> pl.DataFrame:
        ts, kids = ready[_T].to_numpy(), ready[_KID].to_numpy()
        row_kids, starts = np.unique(kids, return_index=True)
        held = self._held if self._held is not None else ready.clear().drop(_T)
        held_kids = held[_KID].to_numpy()
        seg = np.concatenate([row_kids, np.setdiff1d(held_kids, row_kids)])
        n, extra = len(ts), len(seg) - len(row_kids)
        starts = np.concatenate([starts, np.full(extra, n)]).astype(np.int64)
        ends = np.concatenate([starts[1 : len(row_kids)], [n], np.full(extra, n)]).astype(np.int64)[: len(seg)]
        tat, pend = self._tat[seg].copy(), np.where(np.isin(seg, held_kids), _OLD, _NONE)
        allowed, conflated, rel_seg, rel_row, rel_at = gcra(
            ts, starts, ends, tat, pend, self.interval, self.tau, self.policy == "keep_last", horizon
        )
        self._tat[seg] = tat
        parts = [ready.filter(pl.Series(allowed)).with_columns(pl.col(_T).alias(_AT))]
        fresh = rel_row >= 0
        parts.append(ready[rel_row[fresh]].with_columns(pl.Series(_AT, rel_at[fresh], dtype=pl.Int64)))
        old = pl.DataFrame({_KID: seg[rel_seg[~fresh]], _AT: rel_at[~fresh]}, schema={_KID: pl.Int64, _AT: pl.Int64})
        parts.append(held.join(old, on=_KID).with_columns(pl.col("ts_event").alias(_T)))
        waiting = [held.filter(pl.col(_KID).is_in(seg[pend == _OLD].tolist())), ready[pend[pend >= 0]].drop(_T)]
        self._held = pl.concat(waiting, how="vertical_relaxed") if self.policy == "keep_last" else None
        np.add.at(self._counts[2], seg, conflated)
        if self.policy == "drop":
            np.add.at(self._counts[1], kids[~allowed], 1)
        return pl.concat([p.select(parts[0].columns) for p in parts], how="vertical_relaxed")

    def _delay(self, ready: pl.DataFrame, horizon: int) -> pl.DataFrame:
        kids = ready[_KID].to_numpy()
        t0 = pl.Series(self._tat[kids], dtype=pl.Int64)
        i = pl.int_range(pl.len(), dtype=pl.Int64).over(_KID)
        after = pl.max_horizontal(t0, (pl.col(_T) - i * self.interval).cum_max().over(_KID)) + (i + 1) * self.interval
        timed = ready.with_columns(after.alias("__mdp_after")).with_columns(
            pl.max_horizontal(pl.col(_T), pl.col("__mdp_after").shift(1).over(_KID).fill_null(t0) - self.tau).alias(_AT)
        )
        last = timed.group_by(_KID).agg(pl.col("__mdp_after").last())
        self._tat[last[_KID].to_numpy()] = last["__mdp_after"].to_numpy()
        np.add.at(self._counts[3], kids[(timed[_AT] > timed[_T]).to_numpy()], 1)
        queue = timed.drop("__mdp_after", _T)
        if self._held is not None:
            queue = pl.concat([self._held, queue], how="vertical_relaxed")
        due = pl.col(_AT) < horizon
        self._held = queue.filter(~due)
        return queue.filter(due).with_columns(pl.col(_AT).alias(_T))

    def _tag(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Add the key id (new keys get the next ids) and the arrival number of each row."""
        if self._keys is None:
            self._keys = frame.select(self.key).clear().with_columns(pl.lit(0, dtype=pl.Int64).alias(_KID))
        new = (
            frame.select(self.key)
            .unique(maintain_order=True)
            .join(self._keys, on=self.key, how="anti", nulls_equal=True)
        )
        if new.height:
            first = self._keys.height
            ids = pl.int_range(first, first + new.height, dtype=pl.Int64).alias(_KID)
            self._keys = pl.concat([self._keys, new.with_columns(ids)], how="vertical_relaxed")
            self._tat = np.concatenate([self._tat, np.full(new.height, _FAR_PAST, dtype=np.int64)])
            self._counts = np.concatenate([self._counts, np.zeros((4, new.height), dtype=np.int64)], axis=1)
        start, self._arrivals = self._arrivals, self._arrivals + frame.height
        tagged = frame.join(self._keys, on=self.key, how="left", maintain_order="left", nulls_equal=True)
        return tagged.with_columns(pl.int_range(start, self._arrivals, dtype=pl.Int64).alias(_ORD))

    def _empty(self) -> pl.DataFrame:
        assert self._held is not None  # callers check that something waits
        return self._held.clear().drop(_AT, strict=False)

    def _next_due(self) -> int | None:
        """Processing time: when the next waiting row may go out (None: nothing waits)."""
        if self._held is None or self._held.height == 0:
            return None
        if self.policy == "delay":
            return int(self._held.select(pl.col(_AT).min()).item())
        return int(self._tat[self._held[_KID].to_numpy()].min()) - self.tau

    async def _forward(self, ctx: Context) -> None:
        """Send the watermark, held back to the oldest row still waiting."""
        waiting = self._held is not None and self._held.height > 0
        oldest = int(self._held.select(pl.col("ts_event").min()).item()) if waiting else END_OF_TIME  # type: ignore[union-attr]
        await ctx.emit_watermark(min(ctx.watermark, oldest))

    def stats(self) -> dict[str, Any]:
        names = ("passed", "dropped", "conflated", "delayed")
        keys = pl.DataFrame() if self._keys is None else self._keys.select(pl.concat_str(self.key, separator="|"))
        labels = keys.to_series().to_list() if keys.width else []
        per_key = {str(key): dict(zip(names, self._counts[:, k].tolist(), strict=True)) for k, key in enumerate(labels)}
        totals = dict(zip(names, self._counts.sum(axis=1).tolist(), strict=True))
        return {**totals, "waiting": 0 if self._held is None else self._held.height, "per_key": per_key}

    def snapshot(self) -> dict[str, Any]:
        """Buckets, waiting and buffered rows (frames and numpy arrays; picklable) and counters."""
        buffer = pl.concat(self._buffer, how="vertical_relaxed") if self._buffer else None
        tat, counts = self._tat.copy(), self._counts.copy()
        return dict(keys=self._keys, tat=tat, counts=counts, buffer=buffer, held=self._held, arrivals=self._arrivals)

    def restore(self, state: dict[str, Any]) -> None:
        """Restore what ``snapshot`` returned."""
        self._keys, self._held, self._arrivals = state["keys"], state["held"], state["arrivals"]
        self._tat, self._counts = state["tat"].copy(), state["counts"].copy()
        self._buffer = [] if state["buffer"] is None else [state["buffer"]]
