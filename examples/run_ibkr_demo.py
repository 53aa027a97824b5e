"""Run the fake TWS and the IB job together, then print bars: what ``make demo-ibkr`` does.

The fake plays a seeded 20-minute session of three contracts at 60x (about 20 s), drops the connection
once and sends 1100/1101 once; the job reconnects, backfills both outages and writes 1-minute bars to
``ibkr.sqlite`` and the raw ticks to ``ibkr_ticks/`` (Parquet).

Usage::

    python examples/run_ibkr_demo.py [--port 7497]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from mdp.testing.fake_tws import session_trades

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake TWS + source.ibkr job + bars")
    parser.add_argument("--port", type=int, default=7497, help="port for the fake TWS (default 7497)")
    args = parser.parse_args(argv)
    session_trades(trades=20_000, seconds=1_200).write_csv("ib_session.csv")
    print("wrote ib_session.csv: a seeded session of 3 contracts", flush=True)
    fake_cmd = [sys.executable, "-m", "mdp.testing.fake_tws", "--trades", "ib_session.csv", "--port", str(args.port)]
    fake_cmd += ["--speed", "60", "--drop", "300.5:30", "--lost", "700.4:40"]
    fake = subprocess.Popen(fake_cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None
        print(fake.stdout.readline().strip(), flush=True)  # the fake is listening once it says so
        job = [sys.executable, "-m", "mdp", "run", "--config", str(HERE / "ibkr_fake.yaml")]
        job += ["--set", f"dag.nodes.ticks.params.port={args.port}"]
        code = subprocess.call(job)
    finally:
        fake.terminate()
        fake.wait(timeout=30)
    if code != 0:
        return code
    return subprocess.call([sys.executable, str(HERE / "show_bars.py"), "ibkr.sqlite", "--limit", "5"])


if __name__ == "__main__":
    raise SystemExit(main())
