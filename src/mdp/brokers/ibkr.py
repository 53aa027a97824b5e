"""``IbkrSource`` (``source.ibkr``, alias ``provider.ibkr.stream``): live trades or quotes from Interactive Brokers.

It connects to TWS or IB Gateway with ``ib_async`` (read-only, no start-up fetch), subscribes to
tick-by-tick ``AllLast`` (trades) or ``BidAsk`` (quotes) for each contract, and sends canonical frames
and watermarks: ``ts_event`` is IB's tick time (whole seconds), ``ts_recv`` the arrival, ``seq`` the
arrival order. ``ib_async``'s ``Ticker`` stamps tick-by-tick ticks with their arrival time, so the
source reads message 99 itself (a decoder handler) to keep IB's time.

Outages: a dropped socket or ``1100`` starts one. The watermark is held where it was; the source
reconnects with doubling, jittered waits and resubscribes (a new socket, or ``1101``; ``1102`` keeps
the subscriptions), asks TWS for its time ``E`` (its subscriptions are active by then), waits until
TWS's clock has passed ``E`` and fetches the missed ticks of ``[S, E]`` with ``reqHistoricalTicks``
(``S``: the newest second delivered before the outage), reconciled per second as multisets
(:mod:`mdp.brokers.repair`), so bars over the outage come out complete and nothing doubles. If the repair
fails or takes longer than ``backfill_timeout``, the outage is sent as a :class:`~mdp.records.Gap` and
bars over it are marked ``gap``. Historical requests keep IB's pacing rules (:mod:`mdp.brokers.pacing`).

``snapshot()`` holds the newest second per contract (with its ticks), the watermark and counters; a
source restored from it treats the time since as an outage and backfills it, since IB cannot replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, cast

import polars as pl
from pydantic import BaseModel, ValidationError

from mdp.brokers.pacing import HistoricalPacer
from mdp.brokers.params import ContractParams, IbkrParams
from mdp.brokers.repair import NewestSecond, Tick, reconcile
from mdp.errors import BrokerError, ConfigError
from mdp.records import Gap, conform
from mdp.runtime.operator import NO_WATERMARK, Context, Source

log = logging.getLogger("mdp.brokers.ibkr")

NS = 1_000_000_000
#: IB codes that report on the connection or on farms, never a fault of a subscription
NOTICES = frozenset({1100, 1101, 1102, 2103, 2104, 2105, 2106, 2107, 2108, 2119, 2157, 2158})
#: attempts at one page of historical ticks before the repair gives up
HISTORY_TRIES = 3
#: how often the run loop looks at the connection when no tick wakes it
POLL_S = 0.1


class IbkrConnectError(BrokerError):
    """TWS / IB Gateway cannot be reached at start (a failed job: exit 1)."""


class IbkrContractError(ConfigError):
    """IB refused a contract or a subscription; the message carries IB's code and text (a config error)."""


@dataclass(slots=True)
class _Outage:
    """An outage being ridden out: where it began, and whether the feed is back."""

    reason: str
    first: int | None  # S: the newest second delivered before it (None: nothing delivered yet)
    delivered: dict[str, Counter[Any]]  # per symbol, the ticks of second S already sent
    hold: int  # the watermark held until it is repaired
    began: float  # loop time it began; once restored, when its repair began
    restored: bool = False
    held: list[tuple[str, Tick, int]] = field(default_factory=list)  # live ticks of the new session
    repair: asyncio.Task[tuple[int, dict[str, list[Tick]] | None]] | None = None


class IbkrSource(Source):
    """Stream tick-by-tick trades or quotes of IB contracts; see the module docstring for outages.

    Keyword arguments are the fields of :class:`~mdp.brokers.params.IbkrParams`. ``stats()`` gives
    ``connection_state``, ``connected``, ``reconnects``, ``outages``, ``gap_seconds``, ``unrepaired_gaps``,
    ``backfilled_rows`` (per contract), ``historical_requests`` and ``rows_emitted``.
    """

    Params: ClassVar[type[BaseModel] | None] = IbkrParams
    output_kind: ClassVar[str | None] = "trade"
    outputs: Sequence[str] = ("out",)

    def __init__(self, **params: Any) -> None:
        try:
            self.params = IbkrParams.model_validate(params)
        except ValidationError as exc:
            raise ConfigError(f"invalid source.ibkr params: {exc}") from exc
        p = self.params
        self.kind: Literal["trade", "quote"] = "trade" if p.data == "trades" else "quote"
        setattr(self, "output_kind", self.kind)  # noqa: B010  graph validation reads it per node
        self.by_label = {c.label: c for c in p.contracts}
        self._ib: Any = None
        self._subs: dict[int, str] = {}  # reqId -> symbol label, of the current connection
        self._live: list[tuple[str, Tick, int]] = []  # arrived, not yet taken by the run loop
        self._before: list[tuple[str, Tick, int]] = []  # arrived before an outage began, not yet sent
        self._wake = asyncio.Event()
        self._fatal: Exception | None = None
        self._connected = False
        self._outage: _Outage | None = None
        self._newest: dict[str, NewestSecond] = {c.label: NewestSecond() for c in p.contracts}
        self._seq = 0
        self._max_ts = NO_WATERMARK
        self._watermark = NO_WATERMARK
        self._resume: dict[str, Any] | None = None
        self._pacer = HistoricalPacer(p.historical_per_10_min)
        self._last_tick = 0.0
        self.state = "idle"
        self.counts: dict[str, int] = {"reconnects": 0, "outages": 0, "unrepaired_gaps": 0, "historical_requests": 0}
        self.gap_seconds = 0
        self.backfilled: dict[str, int] = {c.label: 0 for c in p.contracts}
        self.rows_emitted = 0

    @classmethod
    def from_params(cls, params: BaseModel) -> IbkrSource:
        return cls(**params.model_dump())

    def port_kind(self, port: str) -> str | None:
        return self.kind

    # -- state -----------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Newest second per contract with its ticks, the watermark, the sequence and the counters."""
        if self._resume is not None:
            return self._resume
        newest = {
            s: {"second": n.second, "ticks": [[*_values(k), c] for k, c in n.ticks.items()]}
            for s, n in self._newest.items()
        }
        return {
            "newest": newest,
            "seq": self._seq,
            "max_ts": self._max_ts,
            "watermark": self._watermark if self._outage is None else self._outage.hold,
            "counts": dict(self.counts),
            "gap_seconds": self.gap_seconds,
            "backfilled": dict(self.backfilled),
            "rows_emitted": self.rows_emitted,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Go on from ``state``: the next run backfills from the newest second it holds."""
        self._resume = state
        for symbol, n in state["newest"].items():
            if symbol in self._newest:
                self._newest[symbol] = NewestSecond(n["second"], Counter({tuple(t[:-1]): t[-1] for t in n["ticks"]}))
        self._seq, self._max_ts, self._watermark = state["seq"], state["max_ts"], state["watermark"]
        self.counts.update(state["counts"])
        self.gap_seconds = state["gap_seconds"]
        self.backfilled.update(state["backfilled"])
        self.rows_emitted = state["rows_emitted"]

    def stats(self) -> dict[str, Any]:
        return {
            "connection_state": self.state,
            "connected": int(self._connected),
            **self.counts,
            "gap_seconds": self.gap_seconds,
            "backfilled_rows": dict(self.backfilled),
            "rows_emitted": self.rows_emitted,
            "pacing_waits": self._pacer.waits,
        }

    def check_connection(self) -> None:
        """Connect to TWS / IB Gateway read-only and disconnect (``mdp validate --connect``).

        Raises:
            IbkrConnectError: the paragraph a run would fail with.
        """

        async def probe() -> None:
            await self._connect_first(subscribe=False)
            await self._close()

        asyncio.run(probe())

    # -- the run ---------------------------------------------------------------------------------------

    async def run(self, ctx: Context) -> None:
        p = self.params
        loop = asyncio.get_running_loop()
        resume, self._resume = self._resume, None
        try:
            await self._connect_first()
            self._last_tick = loop.time()
            if resume is not None:
                self._begin_outage("restored from a checkpoint", loop.time())
                if self._outage is not None:
                    self._outage.restored = True
            while not ctx.stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
                self._wake.clear()
                if self._fatal is not None:
                    raise self._fatal
                if self._idle_over():
                    idle_s = (p.stop_when_idle or 0) / NS
                    log.warning("ibkr: no tick for %.1fs: ending the run (stop_when_idle)", idle_s)
                    break
                if not self._connected:
                    await self._reconnect(ctx)
                    continue
                await self._drain(ctx)
                await self._step_repair(ctx)
            await self._drain(ctx)
            if self._outage is not None:  # ending inside an outage: what is held goes out behind a gap
                await self._finish(ctx, self._outage, None, None)
        finally:
            await self._close()

    def _idle_over(self) -> bool:
        idle, outage = self.params.stop_when_idle, self._outage
        if idle is None or (outage is not None and outage.repair is not None and not outage.repair.done()):
            return False  # a repair under way is not idleness
        return asyncio.get_running_loop().time() - self._last_tick > idle / NS

    async def _connect_first(self, subscribe: bool = True) -> None:
        p = self.params
        try:
            await self._connect(subscribe)
        except Exception as exc:
            raise IbkrConnectError(
                f"cannot connect to TWS / IB Gateway at {p.host}:{p.port} with client id {p.client_id} "
                f"({type(exc).__name__}: {exc or 'no answer'}). Check that TWS or IB Gateway is running and "
                "logged in; that its API accepts socket clients (TWS: Configure → API → Settings → Enable "
                f"ActiveX and Socket Clients); that the socket port there is {p.port} (paper TWS 7497, live "
                "TWS 7496, IB Gateway 4002 paper / 4001 live); that this host is a trusted IP there; and that "
                f"no other connection uses client id {p.client_id}. Without an account, run the fake: "
                f"python -m mdp.testing.fake_tws --trades FILE --port {p.port}"
            ) from None

    async def _connect(self, subscribe: bool = True) -> None:
        from ib_async import IB
        from ib_async.ib import StartupFetchNONE

        p = self.params
        self.state = "connecting"
        ib = IB()
        ib.client.MaxRequests = p.max_messages_per_second
        ib.client.decoder.handlers[99] = self._on_tick
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        ib.client.throttleStart += lambda: log.info(
            "ibkr pacing: holding requests back (%d messages per second at most)", p.max_messages_per_second
        )
        try:
            await ib.connectAsync(
                p.host, p.port, p.client_id, timeout=p.connect_timeout / NS, readonly=True, fetchFields=StartupFetchNONE
            )
        except BaseException:
            ib.disconnectedEvent -= self._on_disconnected
            ib.disconnect()
            self.state = "disconnected"
            raise
        self._ib, self._connected, self.state = ib, True, "connected"
        if subscribe:
            self._subscribe()

    def _subscribe(self) -> None:
        """Ask for tick-by-tick data of every contract on the current connection (new request ids)."""
        ib = self._ib
        self._subs.clear()
        for c in self.params.contracts:
            req_id = ib.client.getReqId()
            self._subs[req_id] = c.label
            ib.client.reqTickByTickData(req_id, _contract(c), "AllLast" if self.kind == "trade" else "BidAsk", 0, False)
        log.info("ibkr: subscribed to %s", ", ".join(self._subs.values()))

    async def _reconnect(self, ctx: Context) -> None:
        p = self.params
        attempt = 0
        while not ctx.stopping and not self._idle_over():
            delay = min(p.reconnect_max_delay, p.reconnect_delay * 2**attempt) / NS * (1 + 0.25 * random.random())
            log.warning("ibkr: reconnecting to %s:%d in %.2fs (attempt %d)", p.host, p.port, delay, attempt + 1)
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception as exc:  # any failure: wait longer and try again
                log.warning("ibkr: reconnect failed: %s: %s", type(exc).__name__, exc)
                attempt += 1
                continue
            self.counts["reconnects"] += 1
            if self._outage is not None:
                self._outage.restored = True
                self._wake.set()
            return

    async def _close(self) -> None:
        outage = self._outage
        if outage is not None and outage.repair is not None:
            outage.repair.cancel()
            with contextlib.suppress(BaseException):
                await outage.repair
        ib, self._ib = self._ib, None
        if ib is not None:
            ib.disconnectedEvent -= self._on_disconnected
            if self._connected:
                for req_id in list(self._subs):
                    with contextlib.suppress(Exception):
                        ib.client.cancelTickByTickData(req_id)
            ib.disconnect()
        self._connected, self.state = False, "closed"

    # -- events from ib_async (called on the loop) -----------------------------------------------------

    def _on_tick(self, fields: list[str]) -> None:
        """Message 99, read here so that IB's tick time is kept."""
        symbol = self._subs.get(int(fields[1]))
        if symbol is None:
            return  # a subscription of an earlier connection
        second = int(fields[3])
        if fields[2] in ("1", "2"):
            price, size = float(fields[4]), float(fields[5])
            tick: Tick = (second, (price, size), (fields[7] or None, fields[8] or None))
        elif fields[2] == "3":
            bid, ask, bid_size, ask_size = (float(f) for f in fields[4:8])
            tick = (second, (bid, ask, bid_size, ask_size), None)
        else:
            return
        self._live.append((symbol, tick, time.time_ns()))
        self._wake.set()

    def _on_error(self, req_id: int, code: int, text: str, contract: Any = None) -> None:
        if code == 1100:
            self._begin_outage(f"IB error 1100: {text}", asyncio.get_running_loop().time())
        elif code in (1101, 1102):
            if self._outage is None:  # restored without a 1100 seen: the time before may still be missing
                self._begin_outage(f"IB error {code} without 1100", asyncio.get_running_loop().time())
            outage = self._outage
            if code == 1101 and self._ib is not None:
                self._subscribe()  # data lost: the subscriptions are gone
            if outage is not None:
                outage.restored = True
            log.warning("ibkr: IB error %d: %s", code, text)
        elif req_id in self._subs and code not in NOTICES and not 2100 <= code < 2200:
            c = self.by_label[self._subs[req_id]]
            self._fatal = IbkrContractError(
                f"IB refused the {self.params.data} subscription of contract {c.model_dump(exclude_defaults=True)}: "
                f"error {code}: {text}. Check symbol, sec_type, exchange and currency (and market data "
                "permissions) in TWS."
            )
        else:
            return
        self._wake.set()

    def _on_disconnected(self) -> None:
        if not self._connected:
            return
        self._connected, self.state = False, "disconnected"
        self._begin_outage("connection dropped", asyncio.get_running_loop().time())
        self._wake.set()

    # -- outages ---------------------------------------------------------------------------------------

    def _begin_outage(self, reason: str, now: float) -> None:
        outage = self._outage
        if outage is not None:  # a second fault before the first was repaired: keep its start
            outage.restored = False
            if outage.repair is not None:
                outage.repair.cancel()
                outage.repair = None
            log.warning("ibkr: %s during a repair; the outage goes on", reason)
            return
        # ticks that arrived before the fault but wait for the run loop were delivered too: they go out
        # ahead of the outage, and the outage's first second and its delivered ticks count them
        self._before, self._live = self._before + self._live, []
        newest = {s: NewestSecond(n.second, Counter(n.ticks)) for s, n in self._newest.items()}
        for symbol, (second, key, _), _ in self._before:
            newest[symbol].add(second, key)
        seconds = [n.second for n in newest.values() if n.second is not None]
        first = max(seconds) if seconds else None
        delivered = {s: n.at(first) for s, n in newest.items()} if first is not None else {}
        self._outage = _Outage(reason, first, delivered, self._watermark, now)
        self.counts["outages"] += 1
        self.state = "repairing" if self._connected else "disconnected"
        log.warning(
            "ibkr: %s; holding the watermark, will %s",
            reason,
            "backfill from " + _iso(first) if first is not None and self.params.backfill else "resume",
        )

    async def _step_repair(self, ctx: Context) -> None:
        """Start the repair once the feed is back; finish it when its history is in."""
        outage = self._outage
        if outage is None or not outage.restored:
            return
        self.state = "repairing"
        if outage.repair is None:
            outage.began = asyncio.get_running_loop().time()  # the repair's own time limit starts now
            outage.repair = asyncio.create_task(self._fetch(outage))
            outage.repair.add_done_callback(lambda _: self._wake.set())
            return
        loop = asyncio.get_running_loop()
        timed_out = loop.time() - outage.began > self.params.backfill_timeout / NS
        if not outage.repair.done() and not timed_out:
            return
        history: dict[str, list[Tick]] | None = None
        last: int | None = None
        if outage.repair.done() and not outage.repair.cancelled() and outage.repair.exception() is None:
            last, history = outage.repair.result()
        else:
            outage.repair.cancel()
            err = None if outage.repair.cancelled() or not outage.repair.done() else outage.repair.exception()
            log.error("ibkr: could not backfill the outage (%s); it is sent as a gap", err or "timed out")
        await self._finish(ctx, outage, last, history)

    async def _fetch(self, outage: _Outage) -> tuple[int, dict[str, list[Tick]] | None]:
        """TWS's time ``E`` once it has passed, and history's ticks of ``[S, E]`` per contract (None: no
        backfill, the outage becomes a gap)."""
        ib = self._ib
        end = int((await ib.reqCurrentTimeAsync()).timestamp())
        # until second E is complete on TWS: polling its clock, no local event says it moved
        while int((await ib.reqCurrentTimeAsync()).timestamp()) <= end:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        if outage.first is None or not self.params.backfill:
            return end, None
        history: dict[str, list[Tick]] = {}
        for c in self.params.contracts:
            history[c.label] = await self._history(c, outage.first, end)
        return end, history

    async def _history(self, c: ContractParams, first: int, last: int) -> list[Tick]:
        """Pages of ``reqHistoricalTicks`` from second ``first`` until past ``last``."""
        what = "TRADES" if self.kind == "trade" else "BID_ASK"
        n = self.params.ticks_per_request
        out: list[Tick] = []
        start = first
        while start <= last:
            stamp = datetime.fromtimestamp(start, UTC)
            page = await self._page(c, stamp, what)
            ticks = [_history_tick(t, self.kind) for t in page]
            out += [t for t in ticks if t[0] <= last]
            if len(ticks) < n or not ticks:
                break
            start = ticks[-1][0] + 1
        return out

    async def _page(self, c: ContractParams, stamp: datetime, what: str) -> list[Any]:
        """One ``reqHistoricalTicks`` page, paced; an error is retried (the pacer waits out an identical
        request's 15 s) up to ``HISTORY_TRIES`` times."""
        n = self.params.ticks_per_request
        for attempt in range(1, HISTORY_TRIES + 1):
            await self._pacer.wait(c.label, (c.label, stamp, what))
            self.counts["historical_requests"] += 1
            try:
                return list(await self._ib.reqHistoricalTicksAsync(_contract(c), stamp, "", n, what, False))
            except Exception as exc:  # IB's error (162 pacing, 366 no data, ...) comes as an exception
                if attempt == HISTORY_TRIES:
                    raise
                log.warning("ibkr: historical ticks of %s failed (%s); trying again", c.label, exc)
        raise AssertionError("unreachable")

    async def _finish(
        self, ctx: Context, outage: _Outage, last: int | None, history: dict[str, list[Tick]] | None
    ) -> None:
        """Send the backfill (or a gap), then the new session's later ticks, and release the watermark."""
        if outage.repair is not None and not outage.repair.done():
            outage.repair.cancel()
        first = outage.first
        held = outage.held
        if first is not None and last is not None:
            self.gap_seconds += max(0, last - first)
        if history is not None and first is not None and last is not None:
            rows: list[tuple[str, Tick, int]] = []
            now = ctx.clock.now_ns()
            for symbol, ticks in history.items():
                fixed = reconcile(ticks, first, outage.delivered.get(symbol, Counter()), last)
                self.backfilled[symbol] += len(fixed)
                rows += [(symbol, t, now) for t in fixed]
            rows.sort(key=lambda r: r[1][0])  # stable: each contract's order within a second is history's
            log.info("ibkr: backfilled %d ticks of %s..%s", len(rows), _iso(first), _iso(last))
            held = [r for r in held if r[1][0] > last]
            self._outage = None
            await self._emit(ctx, rows)
        else:
            if first is not None:
                end = (last + 1) * NS if last is not None else ctx.clock.now_ns()
                self.counts["unrepaired_gaps"] += 1
                await ctx.emit(Gap(None, first * NS, end))
            self._outage = None
        await self._emit(ctx, held)
        self.state = "connected" if self._connected else "disconnected"

    # -- sending ---------------------------------------------------------------------------------------

    async def _drain(self, ctx: Context) -> None:
        if self._before:
            before, self._before = self._before, []
            await self._emit(ctx, before)
        if not self._live:
            return
        arrived, self._live = self._live, []
        self._last_tick = asyncio.get_running_loop().time()
        if self._outage is not None:
            self._outage.held += arrived
            return
        await self._emit(ctx, arrived)

    async def _emit(self, ctx: Context, rows: list[tuple[str, Tick, int]]) -> None:
        """Send rows (symbol, tick, ts_recv) as one frame, then the watermark (held during an outage)."""
        if rows:
            frame = self._frame(rows)
            for symbol, (second, key, _), _ in rows:
                self._newest[symbol].add(second, key)
            self._max_ts = max(self._max_ts, int(frame.get_column("ts_event").max()))  # type: ignore[arg-type]
            self.rows_emitted += frame.height
            await ctx.emit(frame)
        if self._max_ts == NO_WATERMARK:
            return
        mark = self._max_ts - self.params.max_out_of_orderness
        if self._outage is not None:
            mark = min(mark, self._outage.hold)
        if mark > self._watermark:
            self._watermark = mark
            await ctx.emit_watermark(mark)

    def _frame(self, rows: list[tuple[str, Tick, int]]) -> pl.DataFrame:
        seq = range(self._seq, self._seq + len(rows))
        self._seq += len(rows)
        columns: dict[str, Any] = {
            "symbol": [r[0] for r in rows],
            "ts_event": [r[1][0] * NS for r in rows],
            "ts_recv": [r[2] for r in rows],
            "seq": list(seq),
        }
        values = [_values(r[1][1]) for r in rows]
        if self.kind == "trade":
            columns.update(
                price=[v[0] for v in values],
                size=[v[1] for v in values],
                venue=[r[1][2][0] if r[1][2] else None for r in rows],
                conditions=[r[1][2][1] if r[1][2] else None for r in rows],
            )
        else:
            columns.update(
                bid=[v[0] for v in values],
                ask=[v[1] for v in values],
                bid_size=[v[2] for v in values],
                ask_size=[v[3] for v in values],
            )
        return conform(pl.DataFrame(columns, schema_overrides={"venue": pl.String, "conditions": pl.String}), self.kind)


def _values(key: object) -> tuple[float, ...]:
    """A tick's values: (price, size) of a trade, (bid, ask, bid_size, ask_size) of a quote."""
    return cast("tuple[float, ...]", key)


def _contract(c: ContractParams) -> Any:
    from ib_async import Contract

    return Contract(
        conId=c.con_id,
        symbol=c.symbol,
        secType=c.sec_type,
        exchange=c.exchange,
        primaryExchange=c.primary_exchange,
        currency=c.currency,
        lastTradeDateOrContractMonth=c.last_trade_date,
        localSymbol=c.local_symbol,
        multiplier=c.multiplier,
    )


def _history_tick(t: Any, kind: str) -> Tick:
    second = int(t.time.timestamp())
    if kind == "trade":
        return (second, (float(t.price), float(t.size)), (t.exchange or None, t.specialConditions or None))
    return (second, (float(t.priceBid), float(t.priceAsk), float(t.sizeBid), float(t.sizeAsk)), None)


def _iso(second: int | None) -> str:
    return "?" if second is None else datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["IbkrConnectError", "IbkrContractError", "IbkrSource"]
