"""Workers killed mid-stream lose and double no bar: rounds of 3 worker processes, kill -9, compare.

Publishes W1 (``--rows`` trades, ``--symbols`` symbols) to a fresh NATS stream of ``--partitions``
partitions, runs the reference (one ``mdp run`` reading every partition into PostgreSQL), then for each
entry of ``--kills`` (default ``1 2``: one round with one kill, one with two) starts ``--workers`` worker
processes of the same job with ``read: owned`` into a fresh table, ``kill -9``s that many of them
mid-stream (each while its PostgreSQL transaction is in flight when one comes within 10 s), lets the others
finish (``until: caught_up``), and compares the table with the reference, every row and column
(``mdp.testing.scaleout``). Prints one line per round; exits 1 if any round differs. Usage::

    .venv/bin/python benchmarks/scaleout_kill.py [--rows 2000000] [--symbols 500] [--kills 1 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from dataclasses import asdict
from pathlib import Path

import psycopg

from mdp.testing import scaleout
from mdp.workloads import W1Spec, write_w1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--kills", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--url", default="nats://127.0.0.1:4222")
    ap.add_argument("--admin-dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    db = f"mdp_scaleout_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = args.admin_dsn.replace("dbname=test", f"dbname={db}")
    rounds: list[scaleout.Round] = []
    with tempfile.TemporaryDirectory() as tmp:
        setup = scaleout.Setup(args.url, dsn, Path(tmp), partitions=args.partitions)
        try:
            path = Path(tmp) / "trades.parquet"
            write_w1(path, W1Spec(rows=args.rows, symbols=args.symbols))
            scaleout.publish(setup, path)
            print(
                f"published {setup.trades:,} trades, {args.symbols} symbols, {args.partitions} partitions "
                f"in {setup.publish_s:.1f}s",
                flush=True,
            )
            scaleout.reference(setup)
            assert setup.reference is not None
            print(f"reference: one process, {setup.reference.height:,} bars in {setup.reference_s:.1f}s", flush=True)
            for number, kills in enumerate(args.kills, 1):
                rnd = scaleout.run_round(setup, number, workers=args.workers, kills=kills)
                rounds.append(rnd)
                print(rnd.line(), flush=True)
                for error in rnd.errors:
                    print(f"  {error}", flush=True)
        finally:
            scaleout.delete_stream(setup)
            with psycopg.connect(args.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    ok = all(r.equal and not r.errors for r in rounds)
    print(f"{len(rounds)} rounds, {sum(r.kills for r in rounds)} kills: {'all equal' if ok else 'FAILED'}")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
