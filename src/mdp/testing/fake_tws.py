"""A fake TWS / IB Gateway that speaks the real TWS API wire protocol over TCP, for tests and demos.

It plays a file of trades (and, if given, quotes) in real or accelerated time to every client that
subscribed to tick-by-tick data of a contract in the file, answers historical tick requests from the same
file, and follows a script of outages: drop the connection, send ``1100``/``1101`` or ``1100``/``1102``,
or stall. Any client that speaks the protocol works against it; the tests run the real ``ib_async``.

What it implements of the protocol (see ``ib_async``'s ``client.py`` and ``decoder.py``):

- the handshake (``API\\0`` + framed ``v157..178``; answered ``178\\0<time>\\0``), ``startApi`` (71), then
  ``managedAccounts`` (15) and ``nextValidId`` (9), and the end message of every start-up fetch
  (positions 61→62, open orders 5→53, completed orders 99→102, account updates 6→54, account updates
  multi 76→74, executions 7→55), so a default ``IB.connect()`` does not wait on timeouts, and of the
  account summary (62→64) ``ib_async`` asks for after ``1102``;
- ``reqTickByTickData`` (97; ``AllLast``/``Last`` → tickByTick 99 type 1/2, ``BidAsk`` → type 3),
  ``cancelTickByTickData`` (98), ``reqHistoricalTicks`` (96; ``TRADES`` → 98, ``BID_ASK`` → 97),
  ``reqCurrentTime`` (49 → 49: the fake's clock);
- errors (4): ``200`` for a symbol not in the file, ``100`` when a client sends more than
  ``max_messages_per_second``, ``162`` for a historical pacing violation; ``1100``, ``1101``, ``1102``.

Time: the fake's clock starts at the file's first second half a second after the first subscription, and runs
``speed`` times faster than the wall clock. A tick is sent when the clock reaches its second (tick-by-tick
times are whole seconds, so sub-second times are floored); history answers only seconds the clock has
passed. Pacing (IB's published rules): every violation is recorded in :attr:`FakeTws.violations`, so a
test fails a client that breaks them.

Run it::

    python -m mdp.testing.fake_tws --trades trades.csv --port 7497 --speed 60 --drop 120:30 --lost 600:20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

log = logging.getLogger("mdp.fake_tws")

#: the highest protocol version ``ib_async`` 2.1 speaks, and the one the fake answers with
SERVER_VERSION: Final = 178
ACCOUNT: Final = "DU123456"
#: IB's published limits
MAX_MESSAGES_PER_SECOND: Final = 50
HISTORICAL_PER_10_MIN: Final = 60
HISTORICAL_SAME_CONTRACT_2S: Final = 6
HISTORICAL_IDENTICAL_S: Final = 15.0

#: wall seconds between the first subscription and the file's first second
START_DELAY_S: Final = 0.5

OutageKind = Literal["drop", "lost", "kept", "stall"]


@dataclass(frozen=True, slots=True)
class Outage:
    """One scripted fault, at ``at`` seconds of event time after the file's first second, for ``duration``.

    ``drop``: close every connection and refuse new ones; ``lost``: 1100, no data, then 1101 (the client
    must resubscribe); ``kept``: 1100, no data, then 1102 (subscriptions kept); ``stall``: send nothing
    (no error), then catch up with what was due.
    """

    kind: OutageKind
    at: float
    duration: float

    @classmethod
    def parse(cls, kind: OutageKind, text: str) -> Outage:
        """``"120:30"`` → at 120 s for 30 s."""
        at, _, duration = text.partition(":")
        return cls(kind, float(at), float(duration or 0))


@dataclass(slots=True)
class _Feed:
    """One file's rows for one kind, by symbol, in time order: whole-second times, values as wire text."""

    times: list[int]
    symbols: list[str]
    fields: list[tuple[str, ...]]

    @classmethod
    def of(cls, frame: pl.DataFrame, columns: Sequence[str]) -> _Feed:
        frame = frame.with_columns((pl.col("ts_event") // 1_000_000_000).alias("sec")).sort("sec", maintain_order=True)
        texts = [frame.get_column(c).cast(pl.Float64).cast(pl.String) for c in columns]
        return cls(
            frame.get_column("sec").to_list(),
            frame.get_column("symbol").to_list(),
            list(zip(*(t.to_list() for t in texts), strict=True)),
        )

    def rows_of(self, symbol: str) -> list[int]:
        return [i for i, s in enumerate(self.symbols) if s == symbol]


@dataclass
class _Conn:
    """One client connection: its writer and its subscriptions (reqId → (symbol, tick type))."""

    writer: asyncio.StreamWriter
    subs: dict[int, tuple[str, str]] = field(default_factory=dict)
    sent_times: deque[float] = field(default_factory=deque)
    client_id: int = -1

    def send(self, *fields: object) -> None:
        payload = b"".join(str(f).encode() + b"\0" for f in fields)
        self.writer.write(struct.pack(">I", len(payload)) + payload)


@dataclass
class _Pacing:
    """Historical requests seen, to judge IB's pacing rules."""

    requests: deque[tuple[float, str, tuple[str, ...]]] = field(default_factory=deque)


class FakeTws:
    """A TCP server speaking the TWS API, playing ``trades`` (and ``quotes``) frames.

    Args:
        trades: canonical trade frame (``symbol``, ``ts_event`` ns, ``price``, ``size``), in file order.
        quotes: canonical quote frame (``bid``, ``ask``, ``bid_size``, ``ask_size``), or None.
        speed: event seconds per wall second (1.0: real time).
        script: the outages to play.
        host, port: where to listen (port 0: any free port; see :attr:`port` after :meth:`start`).
        max_messages_per_second: client messages allowed per second before error 100 and a violation.
    """

    def __init__(
        self,
        trades: pl.DataFrame,
        quotes: pl.DataFrame | None = None,
        *,
        speed: float = 1.0,
        script: Sequence[Outage] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        max_messages_per_second: int = MAX_MESSAGES_PER_SECOND,
    ) -> None:
        self.trades = _Feed.of(trades, ("price", "size"))
        self.quotes = _Feed.of(quotes, ("bid", "ask", "bid_size", "ask_size")) if quotes is not None else None
        self.symbols = set(self.trades.symbols) | (set(self.quotes.symbols) if self.quotes else set())
        firsts = [f.times[0] for f in (self.trades, self.quotes) if f is not None and f.times]
        self.first_second = min(firsts) if firsts else int(time.time())
        self.speed = speed
        self.script = sorted(script, key=lambda o: o.at)
        self.host, self.port = host, port
        self.max_messages_per_second = max_messages_per_second
        self.conns: list[_Conn] = []
        #: every pacing rule a client broke, as a sentence
        self.violations: list[str] = []
        #: counters a test can read: connections, subscriptions, cancels, historical requests, ticks sent
        self.counts: dict[str, int] = {"connections": 0, "subscriptions": 0, "cancels": 0, "historical": 0, "ticks": 0}
        self.finished = asyncio.Event()
        self._pacing = _Pacing()
        self._t0: float | None = None  # wall (monotonic) time of the first second, once started
        self._started = asyncio.Event()
        self._silent = False  # 1100 sent: no data until restored
        self._server: asyncio.Server | None = None
        self._player: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- clock ---------------------------------------------------------------------------------------

    def now(self) -> float:
        """The fake's clock, event seconds since the epoch (the file's first second until started)."""
        if self._t0 is None:
            return float(self.first_second)
        return self.first_second + max(0.0, time.monotonic() - self._t0) * self.speed

    async def _until(self, second: float) -> None:
        assert self._t0 is not None
        delay = self._t0 + (second - self.first_second) / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- server --------------------------------------------------------------------------------------

    async def start(self) -> FakeTws:
        """Listen; the clock starts at the first subscription."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._player = asyncio.create_task(self._play())
        log.info("fake TWS listening on %s:%d (%d symbols)", self.host, self.port, len(self.symbols))
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._player is not None:
            self._player.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._player
        for conn in list(self.conns):
            conn.writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> FakeTws:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        conn = _Conn(writer)
        try:
            if await reader.readexactly(4) != b"API\0":
                writer.close()
                return
            await _read_message(reader)  # the version range; the fake answers with its own version
            stamp = datetime.fromtimestamp(self.now(), UTC).strftime("%Y%m%d %H:%M:%S UTC")
            conn.send(SERVER_VERSION, stamp)
            self.conns.append(conn)
            self.counts["connections"] += 1
            while True:
                fields = await _read_message(reader)
                self._count_message(conn)
                self._handle(conn, fields)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _count_message(self, conn: _Conn) -> None:
        now = time.monotonic()
        times = conn.sent_times
        times.append(now)
        while times and now - times[0] >= 1.0:
            times.popleft()
        if len(times) > self.max_messages_per_second:
            self.violations.append(f"client {conn.client_id} sent {len(times)} messages within one second")
            conn.send(4, 2, -1, 100, "Max rate of messages per second has been exceeded", "")

    def _handle(self, conn: _Conn, fields: list[str]) -> None:
        msg = int(fields[0])
        if msg == 71:  # startApi
            conn.client_id = int(fields[2])
            conn.send(15, 1, ACCOUNT)
            conn.send(9, 1, 1)
            conn.send(4, 2, -1, 2104, "Market data farm connection is OK:usfarm", "")
        elif msg == 61:
            conn.send(62, 1)
        elif msg == 5:
            conn.send(53, 1)
        elif msg == 99:
            conn.send(102)
        elif msg == 6:
            conn.send(54, 1, ACCOUNT)
        elif msg == 62:  # reqAccountSummary (ib_async asks for it after 1102)
            conn.send(64, 1, fields[2])
        elif msg in (76, 7):
            conn.send(74 if msg == 76 else 55, 1, fields[2])
        elif msg == 49:
            conn.send(49, 1, int(self.now()))
        elif msg == 97:
            self._subscribe(conn, fields)
        elif msg == 98:
            conn.subs.pop(int(fields[1]), None)
            self.counts["cancels"] += 1
        elif msg == 96:
            self._historical(conn, fields)

    def _subscribe(self, conn: _Conn, fields: list[str]) -> None:
        req_id, symbol, tick_type = int(fields[1]), fields[3], fields[14]
        feed = self.quotes if tick_type == "BidAsk" else self.trades
        if tick_type not in ("AllLast", "Last", "BidAsk") or feed is None or symbol not in feed.symbols:
            conn.send(4, 2, req_id, 200, "No security definition has been found for the request", "")
            return
        conn.subs[req_id] = (symbol, tick_type)
        self.counts["subscriptions"] += 1
        if self._t0 is None:  # a moment for the client's other subscriptions to arrive
            self._t0 = time.monotonic() + START_DELAY_S
            self._started.set()

    def _historical(self, conn: _Conn, fields: list[str]) -> None:
        req_id, symbol = int(fields[1]), fields[3]
        start, end, count, what = fields[15], fields[16], int(fields[17]), fields[18]
        self.counts["historical"] += 1
        if not self._paced(symbol, tuple(fields[2:])):
            conn.send(4, 2, req_id, 162, "Historical Market Data Service error message:pacing violation", "")
            return
        feed = self.quotes if what == "BID_ASK" else self.trades
        if feed is None or symbol not in feed.symbols:
            conn.send(4, 2, req_id, 200, "No security definition has been found for the request", "")
            return
        done_before = int(self.now())  # only seconds the clock has passed
        lo = _ib_time(start) if start else None
        hi = _ib_time(end) if end else None
        rows = [i for i in feed.rows_of(symbol) if feed.times[i] < done_before]
        if lo is not None:
            rows = [i for i in rows if feed.times[i] >= lo]
            if hi is not None:
                rows = [i for i in rows if feed.times[i] <= hi]
            if len(rows) > count:  # at least `count` ticks, completed to the end of the last second
                last = feed.times[rows[count - 1]]
                rows = [i for i in rows if feed.times[i] <= last]
        else:
            if hi is not None:
                rows = [i for i in rows if feed.times[i] <= hi]
            rows = rows[-count:]
        out: list[object] = [98 if feed is self.trades else 97, req_id, len(rows)]
        for i in rows:
            if feed is self.trades:
                out += [feed.times[i], 0, *feed.fields[i], "", ""]
            else:
                bid, ask, bid_size, ask_size = feed.fields[i]
                out += [feed.times[i], 0, bid, ask, bid_size, ask_size]
        conn.send(*out, 1)

    def _paced(self, symbol: str, request: tuple[str, ...]) -> bool:
        """Judge a historical request by IB's rules; record and refuse one that breaks them."""
        now = time.monotonic()
        seen = self._pacing.requests
        while seen and now - seen[0][0] > 600:
            seen.popleft()
        broken = []
        if len(seen) + 1 > HISTORICAL_PER_10_MIN:
            broken.append(f"{len(seen) + 1} historical requests within 10 minutes")
        if sum(1 for t, s, _ in seen if s == symbol and now - t <= 2) + 1 >= HISTORICAL_SAME_CONTRACT_2S:
            broken.append(f"{HISTORICAL_SAME_CONTRACT_2S} or more historical requests for {symbol} within 2 s")
        if any(r == request and now - t <= HISTORICAL_IDENTICAL_S for t, _, r in seen):
            broken.append(f"an identical historical request for {symbol} within {HISTORICAL_IDENTICAL_S:.0f} s")
        seen.append((now, symbol, request))
        self.violations.extend(broken)
        return not broken

    # -- the player ----------------------------------------------------------------------------------

    async def _play(self) -> None:
        """Send every tick when the clock reaches its second, following the script."""
        await self._started.wait()
        feeds = [(f, 1 if f is self.trades else 3) for f in (self.trades, self.quotes) if f is not None]
        seconds = sorted({t for f, _ in feeds for t in f.times})
        cursors = [0] * len(feeds)
        events = self._events()
        for second in seconds:
            while events and events[0][0] <= second:
                at, action = events.pop(0)
                await self._until(at)
                await self._act(action)
            await self._until(second)
            batch: list[tuple[_Feed, int, int]] = []
            for k, (feed, tick_type) in enumerate(feeds):
                i = cursors[k]
                while i < len(feed.times) and feed.times[i] == second:
                    batch.append((feed, i, tick_type))
                    i += 1
                cursors[k] = i
            sent = 0
            while events and events[0][0] < second + 1:  # an event inside the second cuts it short
                at, action = events.pop(0)
                cut = max(sent, int(len(batch) * (at - second)))
                self._send(batch[sent:cut])
                sent = cut
                await self._until(at)
                await self._act(action)
            self._send(batch[sent:])
            for conn in self.conns:
                with contextlib.suppress(ConnectionError):
                    await conn.writer.drain()
        for at, action in events:
            await self._until(at)
            await self._act(action)
        log.info("fake TWS: end of the file (%d ticks sent)", self.counts["ticks"])
        self.finished.set()

    def _events(self) -> list[tuple[float, str]]:
        """The script as (event second, action), in time order; a stall is one action that waits."""
        out: list[tuple[float, str]] = []
        for o in self.script:
            start = self.first_second + o.at
            out.append((start, f"{o.kind}:begin:{start + o.duration}"))
            if o.kind != "stall":
                out.append((start + o.duration, f"{o.kind}:end:"))
        return sorted(out, key=lambda e: e[0])

    async def _act(self, action: str) -> None:
        kind, phase, until = action.split(":")
        log.info("fake TWS: %s %s at %s", kind, phase, datetime.fromtimestamp(self.now(), UTC).isoformat())
        if kind == "drop" and phase == "begin":  # TWS goes away: connections closed, new ones refused
            if self._server is not None:
                self._server.close()
            for conn in list(self.conns):  # what was written goes out first, then the socket closes
                conn.writer.transport.close()
                self.conns.remove(conn)
        elif kind == "drop":
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        elif kind in ("lost", "kept"):
            self._silent = phase == "begin"
            code = 1100 if phase == "begin" else 1101 if kind == "lost" else 1102
            text = {
                1100: "Connectivity between IB and Trader Workstation has been lost.",
                1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
                1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
            }[code]
            for conn in self.conns:
                conn.send(4, 2, -1, code, text, "")
                if code == 1101:
                    conn.subs.clear()
        elif kind == "stall":  # nothing goes out meanwhile; then what was due goes out at once
            await self._until(float(until))
            log.info("fake TWS: stall end at %s", datetime.fromtimestamp(self.now(), UTC).isoformat())

    def _send(self, batch: list[tuple[_Feed, int, int]]) -> None:
        if not self._silent:
            for feed, i, tick_type in batch:
                self._tick(feed, i, tick_type)

    def _tick(self, feed: _Feed, i: int, tick_type: int) -> None:
        symbol = feed.symbols[i]
        for conn in self.conns:
            for req_id, (sub_symbol, sub_type) in conn.subs.items():
                if sub_symbol != symbol or (tick_type == 3) != (sub_type == "BidAsk"):
                    continue
                if tick_type == 3:
                    bid, ask, bid_size, ask_size = feed.fields[i]
                    conn.send(99, req_id, 3, feed.times[i], bid, ask, bid_size, ask_size, 0)
                else:
                    code = 2 if sub_type == "AllLast" else 1
                    conn.send(99, req_id, code, feed.times[i], *feed.fields[i], 0, "", "")
                self.counts["ticks"] += 1


async def _read_message(reader: asyncio.StreamReader) -> list[str]:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    payload = await reader.readexactly(size)
    fields = payload.decode(errors="backslashreplace").split("\0")
    return fields[:-1] if fields and fields[-1] == "" else fields


def _ib_time(text: str) -> int:
    """IB's ``yyyymmdd hh:mm:ss UTC`` (or ``yyyymmdd-hh:mm:ss``, UTC) as epoch seconds."""
    text = text.replace("-", " ").removesuffix(" UTC").strip()
    return int(datetime.strptime(text, "%Y%m%d %H:%M:%S").replace(tzinfo=UTC).timestamp())


def read_ticks(path: str | Path, kind: Literal["trade", "quote"] = "trade") -> pl.DataFrame:
    """A trades or quotes file (CSV, CSV.gz or Parquet) with ``symbol``, ``ts_event`` (int ns UTC) and the
    kind's value columns (``price, size`` or ``bid, ask, bid_size, ask_size``)."""
    path = Path(path)
    frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path)
    need = ["symbol", "ts_event", *(("price", "size") if kind == "trade" else ("bid", "ask", "bid_size", "ask_size"))]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: the fake TWS needs the columns {need}; missing {missing}")
    return frame.select(need)


def session_trades(
    symbols: Sequence[str] = ("AAPL", "MSFT", "SPY"),
    trades: int = 60_000,
    seconds: int = 6_000,
    start: str = "2026-03-02T14:30:00Z",
    seed: int = 0,
) -> pl.DataFrame:
    """A seeded scripted session as IB would print it: whole-second times, a cent random walk per symbol,
    round-lot sizes, and many seconds holding identical trades (same price and size), the case a set would
    merge. About ``trades`` rows over ``seconds`` seconds (``symbol, ts_event, price, size``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t0 = int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp())
    n = trades * 3 // 4  # a third of them is repeated below
    sec = np.sort(rng.integers(0, seconds, n))
    sym = rng.integers(0, len(symbols), n)
    steps = rng.integers(-1, 2, n)
    price = np.empty(n)
    for k in range(len(symbols)):
        mine = sym == k
        price[mine] = 100.0 + 50 * k + np.cumsum(steps[mine]) * 0.01
    size = rng.choice([100.0, 100.0, 200.0, 300.0], n)
    repeat = np.where(rng.random(n) < 1 / 3, 2, 1)  # an identical trade right after
    frame = pl.DataFrame(
        {
            "symbol": np.repeat(np.asarray(symbols, dtype=object)[sym], repeat).tolist(),
            "ts_event": np.repeat((t0 + sec) * 1_000_000_000, repeat),
            "price": np.repeat(np.round(price, 2), repeat),
            "size": np.repeat(size, repeat),
        }
    )
    return frame


async def _after_end(fake: FakeTws) -> None:
    await fake.finished.wait()
    await asyncio.sleep(3)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mdp.testing.fake_tws``: serve a file until interrupted (or to its end with --exit-at-end)."""
    parser = argparse.ArgumentParser(prog="python -m mdp.testing.fake_tws", description=__doc__.splitlines()[0])
    parser.add_argument("--trades", required=True, help="trades file: symbol, ts_event (ns), price, size")
    parser.add_argument("--quotes", help="quotes file: symbol, ts_event (ns), bid, ask, bid_size, ask_size")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7497, help="7497: TWS paper trading's port")
    parser.add_argument("--speed", type=float, default=1.0, help="event seconds per wall second")
    for kind, text in (
        ("drop", "close every connection and refuse new ones"),
        ("lost", "send 1100, no data, then 1101 (data lost)"),
        ("kept", "send 1100, no data, then 1102 (data kept)"),
        ("stall", "send nothing, then catch up"),
    ):
        parser.add_argument(f"--{kind}", action="append", default=[], metavar="AT:FOR", help=f"{text}; seconds")
    parser.add_argument("--exit-at-end", action="store_true", help="stop a few seconds after the file ends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    script = [Outage.parse(kind, text) for kind in ("drop", "lost", "kept", "stall") for text in getattr(args, kind)]
    trades = read_ticks(args.trades, "trade")
    quotes = read_ticks(args.quotes, "quote") if args.quotes else None

    async def serve() -> None:
        fake = FakeTws(trades, quotes, speed=args.speed, script=script, host=args.host, port=args.port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with fake:
            print(f"fake TWS on {args.host}:{fake.port}: {len(fake.symbols)} symbols, speed {args.speed}", flush=True)
            waits: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
            if args.exit_at_end:
                waits.append(asyncio.create_task(_after_end(fake)))
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
        for violation in fake.violations:
            print(f"pacing violation: {violation}", file=sys.stderr)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
