"""The design notes' end-to-end example from Python: a job file (IBKR → DAG → store) run by ``UnifiedRuntime``.

    python examples/run_dag_to_store.py [--config FILE] [--set KEY=VALUE ...]

Loads ``examples/run_dag_to_store.yaml`` (``MDP_*`` environment overrides, then each ``--set``), runs it
to its end (Ctrl-C stops it gracefully: every bar held is flushed) and prints what reached the store.
"""

import argparse
import asyncio
from pathlib import Path

from mdp import JobConfig, UnifiedRuntime

HERE = Path(__file__).resolve().parent


async def main(config: Path, overrides: list[str]) -> None:
    settings = JobConfig.from_file(config, overrides=overrides)
    async with UnifiedRuntime(settings) as rt:
        with rt.graceful_signals(lambda sig: print(f"{sig}: stopping, flushing the bars held")):
            stats = await rt.run()
    written = stats.nodes["store"].extra["rows_written"]
    print(f"job {rt.job_name}: {stats.nodes['bars'].rows_in:,} trades in, {written:,} bars written")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "run_dag_to_store.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    asyncio.run(main(args.config, args.overrides))
