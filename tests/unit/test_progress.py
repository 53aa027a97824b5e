"""The terminal progress display: percentage and ETA when the sources know their total."""

from __future__ import annotations

import time

from rich.console import Console

from mdp.app.summary import ProgressDisplay
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import NodeStats, RunStats


async def _idle(inputs: object, outputs: object) -> None:
    return None


def render(total: int | None) -> str:
    """Show a run at 250 then 500 rows (of ``total``) on a recording terminal console; return the text."""
    rows = {"n": 250}

    def statistics() -> RunStats:
        extra: dict[str, object] = {"rows_emitted": rows["n"]}
        if total is not None:
            extra["total_rows"] = total
        return RunStats(nodes={"trades": NodeStats("trades", extra=extra)})

    console = Console(record=True, force_terminal=True, width=200, color_system=None)
    display = ProgressDisplay("bars-1m", Dag().add_node(Node("trades", _idle)), statistics, console)
    progress, task = display.make_progress()
    display.update(progress, task)
    time.sleep(0.2)
    rows["n"] = 500
    display.update(progress, task)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.export_text()


def test_a_known_total_shows_the_percentage_and_the_eta() -> None:
    text = render(total=1_000)
    assert " 50%" in text
    assert "500 rows in" in text
    # 250 rows in about 0.2 s: the other 500 take about 0.4 s, shown rounded up to a second
    assert "eta 0:00:01" in text


def test_an_unknown_total_shows_neither() -> None:
    text = render(total=None)
    assert "500 rows in" in text
    assert "%" not in text
    assert "eta" not in text
