"""Fuzz the replay source with CSV files of good rows mixed with broken ones: mdp never raises anything
but its own errors, never hangs, and accounts for every row it read: in a bar, counted late, or
dead-lettered."""

from __future__ import annotations

import asyncio
import gzip
import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mdp.errors import InputError, NodeError, SourceError
from mdp.operators.bars import BarsOperator
from mdp.runtime.graph import Dag, Node
from mdp.sources.replay import ReplaySource
from mdp.testing import ListSink, run_graph

#: 2024-08-09T00:00:00Z in ms
T0_MS = 1_723_161_600_000
HEADER = b"ts_ms,symbol,price,size"

#: how a row is broken (or not), each a function of the row's good fields -> its line
KINDS = {
    "good": lambda ts, sym, px, sz: b"%d,%s,%s,%s" % (ts, sym, px, sz),
    "late": lambda ts, sym, px, sz: b"%d,%s,%s,%s" % (ts - 600_000, sym, px, sz),
    "bad_utf8_symbol": lambda ts, sym, px, sz: b"%d,%s\xff,%s,%s" % (ts, sym, px, sz),
    "bad_utf8_price": lambda ts, sym, px, sz: b"%d,%s,%s\xc3(,%s" % (ts, sym, px, sz),
    "nan_price": lambda ts, sym, px, sz: b"%d,%s,NaN,%s" % (ts, sym, sz),
    "negative_price": lambda ts, sym, px, sz: b"%d,%s,-%s,%s" % (ts, sym, px, sz),
    "zero_price": lambda ts, sym, px, sz: b"%d,%s,0,%s" % (ts, sym, sz),
    "negative_size": lambda ts, sym, px, sz: b"%d,%s,%s,-%s" % (ts, sym, px, sz),
    "missing_price": lambda ts, sym, px, sz: b"%d,%s,,%s" % (ts, sym, sz),
    "missing_symbol": lambda ts, sym, px, sz: b"%d,,%s,%s" % (ts, px, sz),
    "missing_ts": lambda ts, sym, px, sz: b",%s,%s,%s" % (sym, px, sz),
    "text_price": lambda ts, sym, px, sz: b"%d,%s,abc,%s" % (ts, sym, sz),
    "text_ts": lambda ts, sym, px, sz: b"soon,%s,%s,%s" % (sym, px, sz),
    "seconds": lambda ts, sym, px, sz: b"%d,%s,%s,%s" % (ts // 1000, sym, px, sz),
    "microseconds": lambda ts, sym, px, sz: b"%d,%s,%s,%s" % (ts * 1000, sym, px, sz),
    "nanoseconds": lambda ts, sym, px, sz: b"%d,%s,%s,%s" % (ts * 1_000_000, sym, px, sz),
    "far_future": lambda ts, sym, px, sz: b"%d,%s,%s,%s" % (ts + 10**13, sym, px, sz),
    "too_few_fields": lambda ts, sym, px, sz: b"%d,%s,%s" % (ts, sym, px),
    "too_many_fields": lambda ts, sym, px, sz: b"%d,%s,%s,%s,1" % (ts, sym, px, sz),
}
#: one row: (kind, ms after the previous row, symbol, price, size)
Row = tuple[str, int, bytes, bytes, bytes]
row = st.tuples(
    st.sampled_from(sorted(KINDS)),
    st.integers(0, 5_000),
    st.sampled_from([b"BTC", b"ETH", b"NA"]),
    st.decimals(min_value="0.01", max_value="99999", places=2).map(lambda d: str(d).encode()),
    st.integers(1, 500).map(lambda n: b"%d.%d" % divmod(n, 10)),
)


@st.composite
def files(draw: st.DrawFn) -> list[Row]:
    """Up to 2,000 rows: a seeded run of good ones with broken rows (drawn, so they shrink) put among them."""
    good = draw(st.integers(0, 2_000))
    broken = draw(st.lists(row, max_size=80))
    rng = random.Random(draw(st.integers(0, 2**32)))
    spec: list[Row] = [("good", rng.randint(0, 2_000), b"BTC", b"61000.5", b"0.1") for _ in range(good)]
    for item in broken:
        spec.insert(rng.randint(0, len(spec)), item)
    return spec


#: lines whose timestamp cannot be read, and lines set aside as malformed before any timestamp is parsed
NO_TIME = {"text_ts", "missing_ts"}
MALFORMED = {"too_few_fields", "too_many_fields"}


def no_readable_time(spec: list[Row]) -> bool:
    """Whether not one line has a timestamp to read: then the source takes ``ts_unit`` for wrong, and says
    so, as it does for a file whose first block it cannot read at all (a 1-line file of 'soon' is one)."""
    kinds = {kind for kind, *_ in spec}
    return bool(kinds & NO_TIME) and kinds <= NO_TIME | MALFORMED


def lines_of(spec: list[Row]) -> list[bytes]:
    ts = T0_MS
    out = []
    for kind, step, sym, px, sz in spec:
        ts += step
        out.append(KINDS[kind](ts, sym, px, sz))
    return out


async def replay(path: Path) -> tuple[ReplaySource, BarsOperator, ListSink, ListSink, BaseException | None]:
    source = ReplaySource(path=path, columns={"ts_event": "ts_ms"}, ts_unit="ms", max_out_of_orderness="1s")
    bars, sink, dead = BarsOperator(timeframe="1m"), ListSink(), ListSink()
    dag = Dag().add_node(Node("src", source)).add_node(Node("bars", bars))
    dag.add_node(Node("sink", sink)).add_node(Node("dead", dead))
    dag.add_edge("src", "bars").add_edge("bars", "sink").add_edge("src", "dead", port="deadletter")
    error: BaseException | None = None
    try:
        await run_graph(dag, timeout=30)  # never hangs: a hang fails the example with TimeoutError
    except NodeError as exc:
        error = exc.cause
    return source, bars, sink, dead, error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=files(), gz=st.booleans(), cut=st.one_of(st.none(), st.floats(0.05, 0.95)))
@example(spec=[("text_ts", 0, b"BTC", b"0.01", b"0.1")], gz=False, cut=None)  # found by a full run: one line, no time
def test_every_row_read_is_in_a_bar_late_or_dead_lettered(spec: list[Row], gz: bool, cut: float | None) -> None:
    lines = lines_of(spec)
    data = b"\n".join([HEADER, *lines]) + b"\n"
    if gz:
        data = gzip.compress(data)
    if cut is not None:  # a truncated tail, mid-line or mid-gzip-stream (mostly after the header line)
        keep = int(len(data) * cut) if gz else len(HEADER) + 1 + int((len(data) - len(HEADER) - 1) * cut)
        data = data[: max(1, keep)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("t.csv.gz" if gz else "t.csv")
        path.write_bytes(data)
        source, bars, sink, dead, error = asyncio.run(replay(path))
    stats = source.stats()
    read = stats["offset"] + stats["bad_reasons"].get("malformed_line", 0)
    if isinstance(error, SourceError) and not isinstance(error, InputError) and no_readable_time(spec):
        assert "none of the" in str(error), repr(error)  # the ts_unit setting is blamed: no line could say otherwise
        return
    if isinstance(error, SourceError) and not isinstance(error, InputError):
        assert cut is not None, repr(error)  # only when the cut left no whole header line
        assert read == 0, repr(error)
        return
    if error is not None:
        assert isinstance(error, InputError), repr(error)  # a broken tail or too many bad rows, nothing else
        assert path.name in str(error)
    in_bars = int(sink.frame["trades"].sum()) if sink.frame.height else 0
    dead_rows = dead.frame.height
    assert dead_rows == stats["bad_records"]
    assert in_bars + bars.stats()["late_rows"] + dead_rows == read
    if cut is None:
        assert read == len(lines)
        assert error is None or "max_bad_share" in str(error)
    else:
        assert read <= len(lines)  # a cut plain file may end in half a line: still a row, read as it is
