"""What a long checkpointed history costs a Parquet store: a read, and the start of the job's next run.

A checkpointed job (the default, ``checkpoint: {interval: 5s}``) commits an epoch every 5 s: about 4,700
commits in a 6.5-hour session, 33,000 in a week of a 24-hour feed. For ``--epochs`` commits (each a few
bars, ``symbol_folders=False``, one part per commit) this measures, on a store opened afresh:

* **read**: ``store.read("bar")`` of the whole table, and of one day;
* **start**: ``hold_for_checkpoints`` + ``load_checkpoint``, what a resumed run does before its first write;
* **checkpoint files**: files under ``_checkpoints/<job>/``;
* **compacted**: the two reads again after ``ParquetStore.compact`` (``mdp compact``) merged each day's parts.

A store whose costs grow with the history makes a job that runs for months slower to read and to restart
every day; the figures should stay flat from 100 to 5,000 commits.

Run: ``.venv/bin/python benchmarks/bench_parquet_history.py [--epochs 100,1000,5000] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from mdp.stores.base import Checkpoint
from mdp.stores.parquet import CHECKPOINTS, ParquetStore
from mdp.stores.samples import sample_bars

JOB = "live-bars"
DAY_NS = 86_400 * 10**9


def build(root: Path, epochs: int) -> None:
    """``epochs`` commits of ``JOB``, each 2 bars one minute after the last commit's."""
    with ParquetStore(root, symbol_folders=False) as store:
        store.hold_for_checkpoints(JOB)
        for epoch in range(1, epochs + 1):
            bars = sample_bars(2, origin=epoch * 60 * 10**9)
            checkpoint = Checkpoint(job=JOB, epoch=epoch, graph="{}", inputs="{}", watermark=0, rows=2, state=b"")
            store.write("bar", bars, checkpoint)


def timed(root: Path, repeat: int, start: bool = True) -> dict[str, float]:
    """Medians (ms) of reading the table, one day, and (``start``) starting the job's next run, each on a
    fresh store."""
    runs: dict[str, list[float]] = {"read all": [], "read one day": [], "start": [0.0]}
    for _ in range(repeat):
        with ParquetStore(root, symbol_folders=False, read_only=True) as store:
            t0 = time.perf_counter()
            height = store.read("bar").height
            runs["read all"].append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            store.read("bar", start=0, end=DAY_NS)
            runs["read one day"].append((time.perf_counter() - t0) * 1e3)
        assert height > 0
        if not start:
            continue
        with ParquetStore(root, symbol_folders=False) as store:
            t0 = time.perf_counter()
            store.hold_for_checkpoints(JOB)
            assert store.load_checkpoint(JOB) is not None
            runs["start"].append((time.perf_counter() - t0) * 1e3)
    if start:
        runs["start"].pop(0)
    return {name: statistics.median(values) for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="100,1000,5000", help="comma-separated commit counts")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'commits':>8} {'checkpoint files':>16} {'read all ms':>12} {'read one day ms':>16} {'start ms':>9} "
        f"{'build s':>8} {'compacted: read all ms':>23} {'read one day ms':>16}"
    )
    for epochs in (int(e) for e in args.epochs.split(",")):
        with tempfile.TemporaryDirectory(prefix="mdp-history-") as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            build(root, epochs)
            build_s = time.perf_counter() - t0
            manifests = sum(1 for _ in (root / CHECKPOINTS / JOB).iterdir())
            figures = timed(root, args.repeat)
            with ParquetStore(root, symbol_folders=False) as store:
                store.compact("bar")
            compacted = timed(root, args.repeat, start=False)
            print(
                f"{epochs:>8,} {manifests:>16,} {figures['read all']:>12.1f} {figures['read one day']:>16.1f} "
                f"{figures['start']:>9.1f} {build_s:>8.1f} {compacted['read all']:>23.1f} "
                f"{compacted['read one day']:>16.1f}"
            )


if __name__ == "__main__":
    main()
