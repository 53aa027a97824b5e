"""The conformance suite every ``Store`` backend passes: one contract, checked the same way everywhere.

``check_store(make_store)`` runs every check; ``CHECKS`` names them one by one so a test can run each
as its own case. ``make_store(tables)`` returns a new, unopened store over the backend's storage with
the given table names (each check uses its own tables, and calling it again with the same names must
reach the same data: that is how persistence is checked).

Example::

    >>> import tempfile
    >>> from mdp.stores import SqliteStore
    >>> path = tempfile.mkdtemp() + "/check.sqlite"
    >>> check_store(lambda tables: SqliteStore(path, tables=tables))

The concurrent-reader check runs a second *process* (``python -m mdp.stores.conformance``) that opens
the store read-only while this one is inside a write (from ``Store.on_write_staged``): with
``concurrent_readers=True`` it must see the last committed state, never half a batch; with ``False``
(DuckDB) it must be refused with a ``PermanentStoreError``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

import polars as pl
from polars.testing import assert_frame_equal

from mdp.errors import PermanentStoreError, StoreError
from mdp.records import SCHEMAS, RecordKind
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores.base import KEYS, Store
from mdp.stores.registry import open_store
from mdp.stores.samples import MINUTE, SAMPLES, round_trip_frames, sample_bars, sample_quote_bars, sample_trades

__all__ = [
    "CHECKS",
    "StoreFactory",
    "check_bad_input",
    "check_checkpoints",
    "check_concurrent_reader",
    "check_duplicate_keys_in_one_batch",
    "check_empty",
    "check_idempotent_rewrite",
    "check_provisional_bars",
    "check_read_filters",
    "check_reopen",
    "check_revision_ordering",
    "check_round_trip",
    "check_store",
    "read_elsewhere",
]

StoreFactory = Callable[[Mapping[str, str]], Store]


def _tables(check: str) -> dict[str, str]:
    return {kind: f"c_{check}_{kind}s" for kind in SAMPLES}


#: the kinds kept by (symbol, timeframe, start) with a revision, and a sample of each
_VERSIONED: Final[dict[RecordKind, Callable[..., pl.DataFrame]]] = {"bar": sample_bars, "quote_bar": sample_quote_bars}


def _same(found: pl.DataFrame, expected: pl.DataFrame, kind: RecordKind, what: str) -> None:
    keys = list(KEYS[kind])
    try:
        assert_frame_equal(found.sort(keys), expected.sort(keys), check_exact=True)
    except AssertionError as exc:
        raise AssertionError(f"{what}: the {kind} rows read back differ from those expected\n{exc}") from None


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _raises(error: type[Exception], what: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except error:
        return
    raise AssertionError(f"{what}: expected {error.__name__}, nothing was raised")


# -- the checks ---------------------------------------------------------------------------------------


def check_empty(make_store: StoreFactory) -> None:
    """A fresh store reads empty frames in the canonical schema; writing an empty frame writes nothing."""
    with make_store(_tables("empty")) as store:
        for kind in SAMPLES:
            found = store.read(kind)
            _expect(found.height == 0 and found.schema == pl.Schema(SCHEMAS[kind]), f"empty {kind} read: {found}")
            _expect(store.write(kind, SAMPLES[kind](0)) == 0, f"an empty {kind} frame should write 0 rows")
            _expect(store.write(kind, pl.DataFrame()) == 0, "a frame with no columns and no rows writes 0 rows")
            _expect(store.read(kind).height == 0, f"{kind}: an empty write left rows behind")


def check_idempotent_rewrite(make_store: StoreFactory) -> None:
    """Writing the same batch twice leaves one row per key."""
    with make_store(_tables("idem")) as store:
        for kind, sample in SAMPLES.items():
            batch = sample(12)
            _expect(store.write(kind, batch) == 12, f"{kind}: the first write should send 12 rows")
            store.write(kind, batch)
            _same(store.read(kind), batch, kind, "written twice")


def check_revision_ordering(make_store: StoreFactory) -> None:
    """A higher revision replaces a bar or quote bar; an equal or lower one is ignored; trades keep the first row."""
    with make_store(_tables("rev")) as store:
        for kind, sample in _VERSIONED.items():
            store.write(kind, sample(8, revision=1, close=10.0))
            store.write(kind, sample(8, revision=0, close=20.0))
            _same(store.read(kind), sample(8, revision=1, close=10.0), kind, "a lower revision")
            store.write(kind, sample(8, revision=1, close=30.0))
            _same(store.read(kind), sample(8, revision=1, close=10.0), kind, "an equal revision")
            mixed = pl.concat([sample(8, revision=2, close=40.0)[:4], sample(8, revision=0, close=50.0)[4:]])
            store.write(kind, mixed)
            expected = pl.concat([sample(8, revision=2, close=40.0)[:4], sample(8, revision=1, close=10.0)[4:]])
            _same(store.read(kind), expected, kind, "one batch of higher and lower revisions")
        store.write("trade", sample_trades(6, price=1.0))
        store.write("trade", sample_trades(6, price=2.0))
        _same(store.read("trade"), sample_trades(6, price=1.0), "trade", "a trade written again with changes")


def check_provisional_bars(make_store: StoreFactory) -> None:
    """A provisional bar yields to any bar of its key written later, whatever the revisions; it never
    replaces a final one; inside one batch as across batches."""
    with make_store(_tables("prov")) as store:
        for kind, sample in _VERSIONED.items():

            def bars(
                revision: int, close: float, quality: str = "complete", sample: Callable[..., pl.DataFrame] = sample
            ) -> pl.DataFrame:
                return sample(8, revision=revision, close=close, quality=quality)

            store.write(kind, bars(3, 10.0, "provisional"))
            store.write(kind, bars(5, 20.0, "provisional"))
            _same(store.read(kind), bars(5, 20.0, "provisional"), kind, "a later provisional bar")
            store.write(kind, bars(2, 25.0, "provisional"))
            _same(store.read(kind), bars(2, 25.0, "provisional"), kind, "a later provisional bar, lower revision")
            store.write(kind, bars(0, 30.0))
            _same(store.read(kind), bars(0, 30.0), kind, "a final bar over a provisional one of a higher revision")
            store.write(kind, bars(7, 40.0, "provisional"))
            _same(store.read(kind), bars(0, 30.0), kind, "a provisional bar over a final one")
            store.write(kind, bars(0, 45.0))
            _same(store.read(kind), bars(0, 30.0), kind, "a final bar of an equal revision")
            store.write(kind, bars(1, 50.0, "partial"))
            _same(store.read(kind), bars(1, 50.0, "partial"), kind, "a final bar of a higher revision")
        # one batch: provisional rows, then a final one for half the keys; the last provisional for the rest
        for kind, sample in _VERSIONED.items():
            origin = 1_000 * MINUTE
            first = sample(8, revision=4, close=1.0, origin=origin, quality="provisional")
            final = sample(8, revision=0, close=2.0, origin=origin)
            last = sample(8, revision=1, close=3.0, origin=origin, quality="provisional")
            again = sample(8, revision=0, close=9.0, origin=origin)[:4]  # an equal revision written later
            store.write(kind, pl.concat([first, final[:4], last, again]))
            expected = pl.concat([final[:4], last[4:]])
            _same(store.read(kind, start=origin), expected, kind, "provisional and final bars in one batch")


def check_duplicate_keys_in_one_batch(make_store: StoreFactory) -> None:
    """Inside one batch, the highest revision wins, and the first row among equals: as across batches."""
    with make_store(_tables("dup")) as store:
        versions = [(0, 1.0), (2, 2.0), (1, 3.0), (2, 4.0)]
        for kind, sample in _VERSIONED.items():
            batch = pl.concat([sample(4, revision=r, close=c) for r, c in versions])
            _expect(store.write(kind, batch) == 4, f"a batch with 4 distinct {kind} keys should send 4 rows")
            _same(store.read(kind), sample(4, revision=2, close=2.0), kind, "duplicate keys in one batch")
        trades = pl.concat([sample_trades(4, price=1.0), sample_trades(4, price=2.0)])
        store.write("trade", trades)
        _same(store.read("trade"), sample_trades(4, price=1.0), "trade", "duplicate keys in one batch")


def check_round_trip(make_store: StoreFactory) -> None:
    """Every column comes back exactly as written, in the canonical schema."""
    frames = round_trip_frames()
    with make_store(_tables("trip")) as store:
        for kind, frame in frames.items():
            store.write(kind, frame)
            _same(store.read(kind), frame, kind, "round trip")


def check_read_filters(make_store: StoreFactory) -> None:
    """``symbol``, ``timeframe`` and the half-open ``[start, end)`` select what they say."""
    bars, quote_bars, trades = sample_bars(16), sample_quote_bars(16), sample_trades(16)
    with make_store(_tables("filter")) as store:
        store.write("bar", bars)
        store.write("quote_bar", quote_bars)
        store.write("trade", trades)
        cases: list[tuple[RecordKind, pl.DataFrame, dict[str, Any], pl.Expr]] = [
            ("trade", trades, {"symbol": "BBB", "start": 1_000}, pl.col("ts_event") >= 1_000),
            ("trade", trades, {"start": 2_000, "end": 2_001}, pl.col("ts_event") == 2_000),
            ("trade", trades, {"symbol": "nobody"}, pl.lit(False)),
        ]
        versioned: list[tuple[RecordKind, pl.DataFrame]] = [("bar", bars), ("quote_bar", quote_bars)]
        for kind, frame in versioned:
            cases += [
                (kind, frame, {"symbol": "AAA"}, pl.col("symbol") == "AAA"),
                (kind, frame, {"timeframe": "5m"}, pl.col("timeframe") == "5m"),
                (kind, frame, {"start": MINUTE, "end": 3 * MINUTE}, pl.col("start").is_between(MINUTE, 2 * MINUTE)),
                (kind, frame, {"symbol": "BBB", "timeframe": "1m", "end": MINUTE}, pl.col("start") < MINUTE),
            ]
        for kind, frame, filters, predicate in cases:
            expected = frame.filter(predicate)
            for name in ("symbol", "timeframe"):
                if name in filters:
                    expected = expected.filter(pl.col(name) == filters[name])
            _same(store.read(kind, **filters), expected, kind, f"read with {filters}")


def check_reopen(make_store: StoreFactory) -> None:
    """What was written is there for a new store object over the same storage."""
    with make_store(_tables("reopen")) as store:
        store.write("bar", sample_bars(6))
        store.write("quote_bar", sample_quote_bars(6))
    with make_store(_tables("reopen")) as again:
        _same(again.read("bar"), sample_bars(6), "bar", "after reopening")
        _same(again.read("quote_bar"), sample_quote_bars(6), "quote_bar", "after reopening")


def check_bad_input(make_store: StoreFactory) -> None:
    """Bad frames and misuse raise ``PermanentStoreError`` (a retry will not fix them)."""
    tables = _tables("bad")
    store = make_store(tables)
    _raises(PermanentStoreError, "write before open", lambda: store.write("bar", sample_bars(1)))
    with store:
        _raises(PermanentStoreError, "a missing column", lambda: store.write("bar", sample_bars(2).drop("close")))
        nulls = sample_bars(2).with_columns(pl.lit(None, pl.String).alias("symbol"))
        _raises(PermanentStoreError, "a null key", lambda: store.write("bar", nulls))
        _raises(PermanentStoreError, "an unknown kind", lambda: store.write("tick", sample_bars(2)))
        _raises(PermanentStoreError, "quote bars written as bars", lambda: store.write("bar", sample_quote_bars(2)))
        _expect(store.read("bar").height == 0, "a refused write left rows behind")


def check_concurrent_reader(make_store: StoreFactory, *, concurrent_readers: bool = True) -> None:
    """Another process reads the committed state while a write is under way (or is refused, if not allowed)."""
    with make_store(_tables("conc")) as store:
        store.write("bar", sample_bars(8))
        during: list[dict[str, Any]] = []
        store.on_write_staged = lambda: during.append(read_elsewhere(store, "bar"))
        store.write("bar", sample_bars(8, origin=100 * MINUTE))
        store.on_write_staged = None
        _expect(len(during) == 1, "on_write_staged was not called inside write()")
        after = read_elsewhere(store, "bar")
    if concurrent_readers:
        _expect(during[0].get("rows") == 8, f"a reader during a write should see the 8 committed rows: {during[0]}")
        _expect(after.get("rows") == 16, f"a reader after the write should see 16 rows: {after}")
    else:
        for seen in (during[0], after):
            _expect(seen.get("error") == "PermanentStoreError", f"a second process should be refused: {seen}")
        closed = read_elsewhere(store, "bar")
        _expect(closed.get("rows") == 16, f"once the writer closed, another process should read 16 rows: {closed}")


def _checkpoint(job: str, epoch: int, rows: int) -> Checkpoint:
    return Checkpoint(
        job=job,
        epoch=epoch,
        graph='{"edges": "g"}',
        inputs="{}",
        watermark=epoch * MINUTE,
        rows=rows,
        state=bytes(range(256)) * 3,  # every byte value: a BLOB, not text
        offsets={"trades": {"rows_emitted": rows}},
        committed_ns=1_700_000_000_000_000_000 + epoch,
        final=epoch % 2 == 0,
    )


def check_checkpoints(make_store: StoreFactory) -> None:
    """A store that keeps checkpoints commits a batch and its checkpoint together or not at all: rows written
    before a checkpoint (``hold_for_checkpoints``) are read once it is committed, a write that fails leaves
    both as they were, a checkpoint alone commits, and ``drop_checkpoint`` forgets it but keeps the rows."""
    tables = _tables("ckpt")
    with make_store(tables) as store:
        if not store.keeps_checkpoints:
            _expect(store.load_checkpoint("j") is None, "a store without checkpoints returned one")
            return
        _expect(store.load_checkpoint("j") is None, "a fresh store has no checkpoint")
        store.hold_for_checkpoints("j")
        store.write("bar", sample_bars(4))  # an earlier batch of the epoch
        first = _checkpoint("j", 1, 8)
        store.write("bar", sample_bars(8)[4:], first)
        _same(store.read("bar"), sample_bars(8), "bar", "after the first checkpoint")
        _expect(store.load_checkpoint("j") == first, f"checkpoint read back differs: {store.load_checkpoint('j')}")

        def fail() -> None:
            raise RuntimeError("the process dies inside the commit")

        store.on_write_staged = fail
        later = sample_bars(4, origin=100 * MINUTE)
        _raises(RuntimeError, "a failing commit", lambda: store.write("bar", later, _checkpoint("j", 2, 12)))
        store.on_write_staged = None
        _expect(store.load_checkpoint("j") == first, "a failed commit changed the checkpoint")
        _same(store.read("bar"), sample_bars(8), "bar", "after a failed commit")
        only = _checkpoint("j", 3, 8)
        store.write("bar", sample_bars(0), only)
        _expect(store.load_checkpoint("j") == only, "a checkpoint with no rows was not committed")
        _expect(store.load_checkpoint("other") is None, "checkpoints are kept per job")
    with make_store(tables) as again:
        _expect(again.load_checkpoint("j") == only, "the checkpoint did not survive reopening")
        again.drop_checkpoint("j")
        _expect(again.load_checkpoint("j") is None, "drop_checkpoint left the checkpoint")
        _same(again.read("bar"), sample_bars(8), "bar", "after drop_checkpoint")


CHECKS: Final[dict[str, Callable[[StoreFactory], None]]] = {
    "empty": check_empty,
    "idempotent_rewrite": check_idempotent_rewrite,
    "revision_ordering": check_revision_ordering,
    "provisional_bars": check_provisional_bars,
    "duplicate_keys_in_one_batch": check_duplicate_keys_in_one_batch,
    "round_trip": check_round_trip,
    "read_filters": check_read_filters,
    "reopen": check_reopen,
    "bad_input": check_bad_input,
    "checkpoints": check_checkpoints,
}


def check_store(make_store: StoreFactory, *, concurrent_readers: bool = True) -> None:
    """Run every check on the backend ``make_store`` builds; raise ``AssertionError`` at the first failure."""
    for check in CHECKS.values():
        check(make_store)
    check_concurrent_reader(make_store, concurrent_readers=concurrent_readers)


# -- the reader in another process ------------------------------------------------------------------------


def read_elsewhere(store: Store, kind: str, timeout: float = 120.0) -> dict[str, Any]:
    """Open ``store`` read-only in a new Python process and count its ``kind`` rows.

    Returns ``{"rows": n}``, or ``{"error": <store error class>, "message": ...}`` if it was refused.
    The spec travels on stdin, so a DSN with a password never shows in a process list.
    """
    request = json.dumps({"backend": store.backend, "spec": store.spec(), "kind": kind})
    done = subprocess.run(
        [sys.executable, "-m", "mdp.stores.conformance"],
        input=request,
        capture_output=True,
        text=True,
        timeout=timeout,  # a guard against a deadlock, not a measurement
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"the reader process failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _reader_main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        with open_store(request["backend"], **request["spec"], read_only=True) as store:
            result: dict[str, Any] = {"rows": store.read(request["kind"]).height}
    except StoreError as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    _reader_main()
