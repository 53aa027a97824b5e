"""The dashboard's live feed: status and new or revised bars read back from a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from mdp.app.jobs import JobStore
from mdp.records import Bar, to_frame
from mdp.stores.sqlite import SqliteStore
from mdp.web.feed import JobFeed, Subscriber

S = 1_000_000_000


def bar(symbol: str, second: int, close: float, revision: int = 0) -> Bar:
    start = 1_700_000_000 * S + second * S
    return Bar(
        symbol,
        "1s",
        start,
        start + S,
        100.0,
        max(100.0, close),
        min(100.0, close),
        close,
        5.0,
        500.0,
        100.0,
        3,
        revision,
    )


def registry_with_job(tmp_path: Path, db: Path) -> JobStore:
    registry = JobStore(tmp_path / "jobs.sqlite")
    run = registry.start("live", config_path="live.yaml", mode="dag")
    spec = {"path": str(db), "tables": {"bar": "bars_1s"}, "busy_timeout": 5.0}
    registry.heartbeat(
        run, {"rows_in": 1, "graph": {"stores": [{"node": "store", "backend": "sqlite", "kind": "bar", "spec": spec}]}}
    )
    return registry


def drain(sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        text = sub.queue.get_nowait()
        assert text is not None
        out.append(json.loads(text))
    return out


async def test_new_and_revised_bars_are_sent_once_each(tmp_path: Path) -> None:
    db = tmp_path / "bars.sqlite"
    store = SqliteStore(db, tables={"bar": "bars_1s"})
    store.open()
    store.write("bar", to_frame([bar("AAA", 0, 101.0), bar("BBB", 0, 99.0)]))
    feed = JobFeed(registry_with_job(tmp_path, db), "live", interval=3600)  # polled by hand below
    everyone, only_b = Subscriber(), Subscriber({"BBB"})
    feed.subscribers |= {everyone, only_b}
    try:
        await feed.poll()
        first = drain(everyone)
        assert [m["type"] for m in first] == ["status", "bars"]
        assert first[0]["job"]["name"] == "live"
        assert sorted(b["symbol"] for b in first[1]["bars"]) == ["AAA", "BBB"]
        assert [b["symbol"] for b in drain(only_b)[1]["bars"]] == ["BBB"]

        await feed.poll()  # nothing committed: nothing sent (the status is unchanged too)
        assert drain(everyone) == []

        store.write("bar", to_frame([bar("AAA", 0, 103.0, revision=1), bar("AAA", 1, 102.0)]))
        await feed.poll()
        sent = drain(everyone)[0]["bars"]
        assert [(b["symbol"], b["start"] % (10 * S) // S, b["close"], b["revision"]) for b in sent] == [
            ("AAA", 0, 103.0, 1),
            ("AAA", 1, 102.0, 0),
        ]
        assert drain(only_b) == []  # no bar of its symbol changed

        # a late subscriber gets the status and the current window at once
        late = feed.subscribe({"AAA"})
        current = drain(late)
        assert [m["type"] for m in current] == ["status", "bars"]
        assert [(b["start"] % (10 * S) // S, b["close"]) for b in current[1]["bars"]] == [(0, 103.0), (1, 102.0)]
    finally:
        feed.subscribers.clear()
        await feed.close()
        store.close()


async def test_a_subscriber_that_falls_behind_is_dropped(tmp_path: Path) -> None:
    db = tmp_path / "bars.sqlite"
    feed = JobFeed(registry_with_job(tmp_path, db), "live", interval=3600)
    slow = Subscriber()
    for _ in range(slow.queue.maxsize):
        slow.offer("{}")
    feed.subscribers.add(slow)
    await feed.poll()  # the status does not fit: the subscriber is dropped and told so (None)
    assert slow not in feed.subscribers
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert items[-1] is None
    await asyncio.sleep(0)
    await feed.close()
