"""The two design notes (``../shared/seeds``) run as written, with only the import prefix changed.

Every fenced block of both notes is read from the notes themselves (nothing is copied here) and is
either run or listed in :data:`NOT_EXAMPLES` with why it is no example (a test report, a file tree's
prose, a diagram, the notes' own implementation sketch). A block runs with ``market_data_pipeline``
replaced by ``mdp`` and nothing else changed, except:

- the names a block uses that the note defines elsewhere (``dag``, ``fn``, ``my_operator``, ...) come from a
  small prelude, given per block in :data:`PRELUDES`, and ``...`` / ``{...}`` placeholders get values
  (:data:`PLACEHOLDERS`);
- the notes' own slips, which the migration guide lists: ``ChannelClosed`` and ``Dag`` used without an
  import (the prelude imports them from the original path);
- top-level ``await`` and ``async with`` run as in an async REPL (``PyCF_ALLOW_TOP_LEVEL_AWAIT``).

Python blocks run in this process; command-line blocks run command by command through the real
``mdp`` / ``mdp-legacy`` / ``python`` / ``pytest`` / ``ruff`` in a scratch folder holding the repository's
``configs`` and ``examples``.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mdp.config.registry import default_registry, reset_default_registry
from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::mdp.compat.MovedNameWarning")  # checked on their own below
SEEDS = REPO.parent / "shared" / "seeds"
NOTES = {"000": "000_de9f8a901a55fab9.txt", "003": "003_cb41c6011bfa67b3.txt"}
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


# -- reading the notes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One fenced block of a note; ``key`` is ``"<note>#<index>"``."""

    key: str
    lang: str
    text: str

    @property
    def first_line(self) -> str:
        return next((line for line in self.text.splitlines() if line.strip()), "")

    @property
    def as_mdp(self) -> str:
        """The block with only the import prefix changed."""
        return self.text.replace("market_data_pipeline", "mdp")


def read_blocks() -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    for note, name in NOTES.items():
        text = (SEEDS / name).read_text(encoding="utf-8")
        for i, m in enumerate(FENCE.finditer(text)):
            blocks[f"{note}#{i}"] = Block(f"{note}#{i}", m.group(1), m.group(2))
    return blocks


@pytest.fixture(scope="module")
def blocks() -> dict[str, Block]:
    if not all((SEEDS / name).exists() for name in NOTES.values()):
        unavailable(f"the design notes at {SEEDS}")
    return read_blocks()


#: block → (how its first line starts, why it is no example to run)
NOT_EXAMPLES: dict[str, tuple[str, str]] = {
    "000#0": ("Existing Tests:", "a test report"),
    "000#1": ("tests/unit/dag/test_channel_backpressure.py", "a test report (the files: see 000#5 and 000#18)"),
    "000#2": ("=====", "a test report"),
    "000#7": ("â”Œ", "a diagram"),
    "000#8": ("Source Node", "a diagram"),
    "000#12": ("Initial Errors:", "a lint report"),
    "000#13": ("Component           Tests", "a coverage table"),
    "000#19": ("â”Œ", "a scorecard"),
    "003#0": ("Language ", "a line count"),
    "003#11": ("/\\", "a test pyramid"),
    "003#12": ("class UnifiedRuntime:", "the notes' sketch of the facade's insides; the facade is mdp.UnifiedRuntime"),
    "003#14": (
        "_original_run = UnifiedRuntime.run",
        "the notes' sketch of how they patched metrics in; mdp counts jobs without patching (003#7 runs the result)",
    ),
}


# -- running Python blocks ---------------------------------------------------------------------------------


async def run_python(code: str, ns: dict[str, Any]) -> str:
    """Run ``code`` in ``ns`` as an async REPL would (top-level await allowed); return what it printed."""
    out = io.StringIO()
    compiled = compile(code, "<seed note>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    with contextlib.redirect_stdout(out):
        result = eval(compiled, ns)
        if inspect.iscoroutine(result):
            await result
    return out.getvalue()


#: names the notes define around a block (or, marked, the imports the notes left out)
PRELUDES: dict[str, str] = {
    "000#9": """
        from mdp.orchestration.dag import Dag, Node

        async def fn(_in, _out):
            pass
    """,
    "000#10": """
        from mdp.orchestration.dag import Channel, Watermark

        crossings = []

        def slow_down_producer():
            crossings.append("high")

        def resume_normal_speed():
            crossings.append("low")
    """,
    "000#11": """
        from mdp.orchestration.dag import Dag, DagRuntime, Node, RunConfig, map_async

        async def source(_in, out):
            (ch,) = out.values()
            for i in range(10):
                await ch.put(i)
            await ch.close()

        async def double(inputs, outputs):
            await map_async(inputs["src"], outputs["snk"], lambda x: x * 2)

        async def sink(inputs, _out):
            print([x async for x in inputs["dbl"]])

        dag = Dag().add_node(Node("src", source)).add_node(Node("dbl", double)).add_node(Node("snk", sink))
        dag.add_edge("src", "dbl").add_edge("dbl", "snk")
    """,
    # the notes' slip: ChannelClosed is used without an import
    "000#14": "from mdp.orchestration.dag import ChannelClosed",
    "000#15": """
        from mdp.orchestration.dag import Dag, Node

        async def src(_in, out):
            (ch,) = out.values()
            for i in range(250):
                await ch.put(i)
            await ch.close()

        async def snk(inputs, _out):
            print([len(batch) async for batch in inputs["buf"]])

        dag = Dag().add_node(Node("src", src)).add_node(Node("snk", snk))
    """,
    "000#16": """
        from mdp.orchestration.dag import Dag, Node, filter_async

        async def src(_in, out):
            (ch,) = out.values()
            for i in range(10):
                await ch.put(i)
            await ch.close()

        async def evens(inputs, outputs):
            await filter_async(inputs["src"], outputs["snk"], lambda x: x % 2 == 0)

        async def snk(inputs, _out):
            print([x async for x in inputs["evens"]])

        dag = Dag().add_node(Node("src", src)).add_node(Node("evens", evens)).add_node(Node("snk", snk))
        dag.add_edge("src", "evens").add_edge("evens", "snk")
    """,
    # the notes' slip: Dag is used without an import; ``spec`` is a classic pipeline (configs/classic/bars.yaml)
    "003#1": """
        from mdp.orchestration.dag import Dag

        spec = yaml.safe_load(open("configs/classic/bars.yaml"))["classic"]
    """,
    "003#5": """
        from mdp.settings import UnifiedRuntimeSettings

        config_dict = yaml.safe_load(open("config.yaml"))
        file_settings = UnifiedRuntimeSettings.from_file("config.yaml")
    """,
    "003#8": """
        import asyncio

        from mdp.runtime import UnifiedRuntime
        from mdp.settings import UnifiedRuntimeSettings

        gate = asyncio.Event()

        async def waiting(_in, out):
            await gate.wait()

        async def sink(_in, _out):
            pass

        settings = UnifiedRuntimeSettings.from_file("configs/dag/bars.yaml")
        runtime = UnifiedRuntime(settings)
        dag = Dag().add_node(Node("src", waiting)).add_node(Node("snk", sink)).add_edge("src", "snk")
        await runtime.start_dag(dag, "my-job")
    """,
    "003#9": """
        import polars as pl

        async def my_operator(inputs, outputs, threshold: float = 0.0):
            (src,) = inputs.values()
            async for item in src:
                for ch in outputs.values():
                    await ch.put(item * 10 if item < threshold else item)
            for ch in outputs.values():
                await ch.close()

        class MyProvider:
            def __init__(self, count: int = 3):
                self.count = count

            async def stream(self):
                for i in range(self.count):
                    yield i
    """,
    "003#13": """
        from mdp.config.registry import ComponentRegistry

        registry = ComponentRegistry()
    """,
}
#: literal placeholders of the notes and what stands in for them
PLACEHOLDERS: dict[str, dict[str, str]] = {
    "003#3": {"--spec ...": "--spec configs/classic/bars.yaml"},
    "003#5": {"from_dict({...})": "from_dict(config_dict)"},
    "003#15": {"--config ...": "--config configs/classic/bars.yaml", "--spec ...": "--spec configs/classic/bars.yaml"},
}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding copies of ``configs`` and ``examples`` (jobs write their stores here), made the
    current directory, with a job registry of its own and no ``MDP_*`` variables from outside."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("*.sqlite*"))
    for name in [n for n in os.environ if n.startswith("MDP_") and n != "MDP_REQUIRE_SERVICES"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MDP_HOME", str(tmp_path / ".mdp-home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def prepared(block: Block) -> str:
    code = block.as_mdp
    for placeholder, value in PLACEHOLDERS.get(block.key, {}).items():
        assert placeholder in code, f"{block.key}: placeholder {placeholder!r} is gone from the note"
        code = code.replace(placeholder, value)
    return code


async def run_block(block: Block, ns: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Run the block's prelude, then the block; return what the block printed and its namespace."""
    ns = {"__name__": "seed_note", "yaml": yaml, **(ns or {})}
    await run_python(textwrap.dedent(PRELUDES.get(block.key, "")), ns)
    return await run_python(prepared(block), ns), ns


def bars_in(db: Path, table: str = "bars_1m") -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- running command-line blocks -------------------------------------------------------------------------


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """The commands of a shell block, each with the output lines the note shows under it (``$`` blocks)."""
    text = prepared(block)
    out: list[tuple[str, list[str]]] = []
    prompt = any(line.startswith("$ ") for line in text.splitlines())
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if prompt and not line.startswith("$ "):
            out[-1][1].append(line)
            continue
        out.append((line.removeprefix("$ ").strip(), []))
    return out


def shell(
    command: str, cwd: Path, *, extra_path: Path | None = None, timeout: float = 110, stdout_only: bool = False
) -> str:
    """Run one command of a note with this environment's tools; fail showing its output unless it exits 0;
    return what it printed (``stdout_only``: without stderr, e.g. to parse ``--json``)."""
    argv = shlex.split(command)
    tools = {"python": [sys.executable], "pytest": [sys.executable, "-m", "pytest"]}
    argv = [*tools.get(argv[0], [str(BIN / argv[0])]), *argv[1:]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(extra_path or ""), str(REPO)]))}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout if stdout_only else done.stdout + done.stderr


# -- every block is accounted for -------------------------------------------------------------------------


def test_every_block_of_both_notes_is_run_or_says_why_not(blocks: dict[str, Block]) -> None:
    runnable = {
        name.removeprefix("test_note_").replace("_", "#", 1) for name in globals() if name.startswith("test_note_")
    }
    for key, block in blocks.items():
        if key in NOT_EXAMPLES:
            assert block.first_line.strip().startswith(NOT_EXAMPLES[key][0].strip()), (
                f"{key} changed: {block.first_line!r}"
            )
        else:
            assert key in runnable, f"block {key} ({block.lang}: {block.first_line!r}) is neither run nor excused"
    assert runnable | set(NOT_EXAMPLES) == set(blocks), "a test names a block the notes no longer have"


def test_every_original_module_path_warns_with_the_one_to_import_from_now() -> None:
    paths = {
        "mdp.orchestration.dag": "import from mdp.dag",
        "mdp.orchestration.dag.graph": "from mdp.dag",
        "mdp.orchestration.dag.channel": "from mdp.dag",
        "mdp.orchestration.dag.operators": "from mdp.dag",
        "mdp.orchestration.dag.runtime": "from mdp.dag",
        "mdp.orchestration.dag.registry": "import default_registry from mdp.config",
        "mdp.orchestration.dag.builder": "import build_dag from mdp.config",
        "mdp.orchestration.runtime_orchestrator": "from mdp.compat",
        "mdp.settings": "from mdp",
        "mdp.settings.runtime": "from mdp.compat",
        "mdp.settings.runtime_unified": "from mdp",
        "mdp.pipeline": "from mdp.compat",
    }
    script = "; ".join(f"import {p}" for p in paths)
    done = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", script], capture_output=True, text=True, check=True
    )
    for path, new in paths.items():
        line = next((ln for ln in done.stderr.splitlines() if f"MovedNameWarning: {path} is" in ln), None)
        assert line is not None, f"no warning for {path}:\n{done.stderr}"
        assert new in line, line
        assert line.startswith("<string>:1:"), line  # attributed to the user's import, not to mdp


# -- the DAG runtime note (000) ---------------------------------------------------------------------------


def test_note_000_3(blocks: dict[str, Block]) -> None:
    """``$ python examples/run_dag_runtime_basic.py`` prints what the note shows."""
    ((command, expected),) = commands(blocks["000#3"])
    assert shell(command, REPO).splitlines() == expected


def test_note_000_4(blocks: dict[str, Block]) -> None:
    """Each module of the note's source tree imports under its original path."""
    package: list[str] = []
    modules = []
    for line in blocks["000#4"].as_mdp.splitlines():
        name = line.lstrip("│├└─ \u00a0").split(" ")[0]
        if not name:
            continue
        depth = (len(line) - len(line.lstrip("│├└─ \u00a0"))) // 4
        package = package[:depth]
        if name.endswith("/"):
            package.append(name.strip("/").replace("/", "."))
        elif name.endswith(".py"):
            module = ".".join([*package, name.removesuffix(".py")])
            modules.append(module.removeprefix("src.").removesuffix(".__init__"))
    assert len(modules) == blocks["000#4"].text.count(".py") == 8, modules
    assert "mdp.orchestration.runtime_orchestrator" in modules
    assert "mdp.settings.runtime" in modules
    code = "import importlib, warnings; warnings.simplefilter('ignore')\n" + "\n".join(
        f"importlib.import_module({m!r})" for m in modules
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_note_000_5(blocks: dict[str, Block]) -> None:
    """The note's DAG test files exist (000#18 runs them)."""
    names = re.findall(r"(\w+\.py)", blocks["000#5"].text)
    assert names
    assert all((REPO / "tests" / "unit" / "dag" / name).exists() for name in names)


def test_note_000_6(blocks: dict[str, Block]) -> None:
    """The note's example exists; its phase README is ``docs/migration.md`` here."""
    assert "run_dag_runtime_basic.py" in blocks["000#6"].text
    assert "PHASE_5.0.1_README.md" in blocks["000#6"].text
    assert (REPO / "examples" / "run_dag_runtime_basic.py").exists()
    assert "PHASE_5.0.1_README.md" in (REPO / "docs" / "migration.md").read_text()


async def test_note_000_9(blocks: dict[str, Block]) -> None:
    """The cycle example raises ``DagValidationError`` naming the cycle."""
    from mdp.dag import DagValidationError

    with pytest.raises(DagValidationError, match=r"cycle is likely: a -> b -> a"):
        await run_block(blocks["000#9"])


async def test_note_000_10(blocks: dict[str, Block]) -> None:
    """The channel with watermark callbacks: on_high at 1536 queued, on_low back at 512."""
    _, ns = await run_block(blocks["000#10"])
    ch = ns["ch"]
    for i in range(1536):
        await ch.put(i)
    assert ns["crossings"] == ["high"]
    while len(ch) > 512:
        await ch.get()
    assert ns["crossings"] == ["high", "low"]


async def test_note_000_11(blocks: dict[str, Block]) -> None:
    """``stats = await rt.start()`` with the note's RunConfig blocks until the graph is done."""
    printed, ns = await run_block(blocks["000#11"])
    assert printed == "[0, 2, 4, 6, 8, 10, 12, 14, 16, 18]\n"
    assert (ns["stats"].tasks_started, ns["stats"].tasks_completed) == (3, 3)


async def test_note_000_14(blocks: dict[str, Block]) -> None:
    """The Simple Linear DAG prints 0, 2, 4, ..., 18."""
    printed, _ = await run_block(blocks["000#14"])
    assert printed.split() == [str(2 * i) for i in range(10)]


async def test_note_000_15(blocks: dict[str, Block]) -> None:
    """The ``buffer_async`` node, wired between a source and a sink, batches by 100."""
    from mdp.dag import DagRuntime

    _, ns = await run_block(blocks["000#15"])
    ns["dag"].add_edge("src", "buf").add_edge("buf", "snk")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        await DagRuntime(ns["dag"]).start()
    assert out.getvalue() == "[100, 100, 50]\n"


async def test_note_000_16(blocks: dict[str, Block]) -> None:
    """The RuntimeOrchestrator facade runs a graph with the note's settings."""
    printed, ns = await run_block(blocks["000#16"])
    assert printed == "[0, 2, 4, 6, 8]\n"
    orchestrator = ns["orchestrator"]
    assert orchestrator.state == "stopped"
    assert orchestrator.settings.runtime.channel_capacity == 4096


async def test_note_000_17(blocks: dict[str, Block]) -> None:
    """The fan-in node gets its inputs keyed by the upstream names and its output by the downstream one."""
    from mdp.dag import Dag, DagRuntime, Node

    _, ns = await run_block(blocks["000#17"])
    seen: dict[str, Any] = {}

    async def src(_in: dict, out: dict) -> None:
        for ch in out.values():
            await ch.put(1)
            await ch.close()

    async def downstream(inputs: dict, _out: dict) -> None:
        seen.update(inputs)

    fan_in = ns["fan_in"]
    dag = Dag().add_node(Node("src1", src)).add_node(Node("src2", src))
    dag.add_node(Node("merge", fan_in)).add_node(Node("downstream", downstream))
    dag.add_edge("src1", "merge").add_edge("src2", "merge").add_edge("merge", "downstream")
    stats = await DagRuntime(dag).start()
    assert list(seen) == ["merge"]
    assert stats.tasks_failed == 0


def test_note_000_18(blocks: dict[str, Block], tmp_path: Path) -> None:
    """The quick commands: the DAG tests, the example and ruff on the original package path (``--fix`` on a
    copy, so the tree is not touched). ``pytest tests/unit/ -q`` is the unit suite this file belongs beside:
    CI runs it (``make test``), not this test."""
    ran = []
    for command, _ in commands(blocks["000#18"]):
        if command == "pytest tests/unit/ -q":
            continue
        cwd = REPO
        if "--fix" in command:
            cwd = tmp_path
            shutil.copytree(REPO / "src" / "mdp" / "orchestration", tmp_path / "src" / "mdp" / "orchestration")
            shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
        output = shell(command, cwd)
        if command.startswith("pytest"):
            assert "6 passed" in output
        ran.append(command)
    assert len(ran) == 4
    copy = tmp_path / "src" / "mdp" / "orchestration"
    for original in (REPO / "src" / "mdp" / "orchestration").rglob("*.py"):  # --fix found nothing to fix
        assert (copy / original.relative_to(REPO / "src" / "mdp" / "orchestration")).read_text() == original.read_text()


# -- the unified runtime note (003) -----------------------------------------------------------------------


async def test_note_003_1(blocks: dict[str, Block], scratch: Path) -> None:
    """Classic: ``create_pipeline(spec)`` runs (with a warning naming the modern way). DAG: the note runs an
    empty ``Dag()``, which its own validation rule (at least one source) refuses, as mdp does."""
    from mdp.compat import MovedNameWarning
    from mdp.dag import DagValidationError

    ns: dict[str, Any] = {}
    with (
        pytest.warns(MovedNameWarning, match="create_pipeline.*UnifiedRuntime"),
        pytest.raises(DagValidationError, match="the graph has no nodes"),
    ):
        await run_block(blocks["003#1"], ns)
    assert bars_in(scratch / "classic_bars.sqlite") == 200


async def test_note_003_2(blocks: dict[str, Block], scratch: Path) -> None:
    """``UnifiedRuntimeSettings.from_file("config.yaml")`` and ``async with UnifiedRuntime(...)``."""
    shutil.copy(scratch / "configs" / "dag" / "bars.yaml", scratch / "config.yaml")
    _, ns = await run_block(blocks["003#2"])
    assert (ns["rt"].state, ns["rt"].job_name) == ("stopped", "my-job")
    assert bars_in(scratch / "bars.sqlite") == 200


def test_note_003_3(blocks: dict[str, Block], scratch: Path) -> None:
    """The original runner by module, and a hand-written DAG script (the note's placeholder: the Simple
    Linear DAG)."""
    shutil.copy(REPO / "examples" / "simple_linear_dag.py", scratch / "my_dag_script.py")
    (runner, _), (script, _) = commands(blocks["003#3"])
    assert "'run --spec' is mdp's 'mdp run --config configs/classic/bars.yaml --mode classic'" in shell(runner, scratch)
    assert bars_in(scratch / "classic_bars.sqlite") == 200
    assert shell(script, scratch).split() == [str(2 * i) for i in range(10)]


def test_note_003_4(blocks: dict[str, Block], scratch: Path) -> None:
    """``mdp run`` in both modes, ``--mode dag`` on a file with both sections, ``mdp list``, ``mdp status``."""
    both = yaml.safe_load((scratch / "configs" / "dag" / "bars.yaml").read_text())
    classic = yaml.safe_load((scratch / "configs" / "classic" / "bars.yaml").read_text())
    any_config = {**both, "job": "my-job", "mode": "classic", "classic": classic["classic"]}
    (scratch / "any-config.yaml").write_text(yaml.safe_dump(any_config))
    outputs = [shell(command, scratch) for command, _ in commands(blocks["003#4"])]
    assert "job classic-bars finished" in outputs[0]
    assert "job bars finished" in outputs[1]
    assert "job my-job finished" in outputs[2]  # the dag section ran: --mode dag wins over the file's mode
    assert all(name in outputs[3] for name in ("classic-bars", "bars", "my-job"))
    assert re.search(r"job\s+my-job", outputs[4])
    assert "(dag mode)" in outputs[4]


async def test_note_003_5(blocks: dict[str, Block], scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``from_file``, ``from_dict``, ``from_env`` and ``from_env(fallback=...)``."""
    shutil.copy(scratch / "configs" / "dag" / "bars.yaml", scratch / "config.yaml")
    monkeypatch.setenv("MDP_RUNTIME__CHANNEL_CAPACITY", "4096")
    _, ns = await run_block(blocks["003#5"])
    assert ns["settings"].job == "bars"
    assert ns["settings"].runtime.channel_capacity == 4096
    assert ns["settings"].dag == ns["file_settings"].dag


def test_note_003_6(blocks: dict[str, Block], scratch: Path) -> None:
    """The note's ``configs/dag/bars.yaml`` has the shape mdp's job files have (mode, nodes of id, type,
    params, edges); its source ``provider.ibkr.stream`` is ``source.ibkr`` under the seed's name.
    ``configs/dag/bars.yaml`` here is the same job on the synthetic feed."""
    from mdp.config import JobConfig, build_dag

    note = yaml.safe_load(blocks["003#6"].text.replace("{...}", "{}"))
    job = JobConfig.from_dict(note)
    ours = JobConfig.from_file(scratch / "configs" / "dag" / "bars.yaml")
    assert job.mode == ours.mode == "dag"
    assert job.dag is not None
    assert ours.dag is not None
    assert set(note["dag"]) == {"nodes", "edges"}
    assert set(note["dag"]["nodes"][0]) == {"id", "type", "params"}
    build_dag(ours)
    assert default_registry().get("provider.ibkr.stream").load() is default_registry().get("source.ibkr").load()


def test_note_003_7(blocks: dict[str, Block], tmp_path: Path) -> None:
    """Two DAG jobs and an idle classic runtime in one plain Python process (no ``JobMetrics``): a scrape of
    ``prometheus_client``'s own endpoint while both jobs run shows exactly the note's four lines."""
    script = tmp_path / "two_jobs.py"
    script.write_text(TWO_JOBS)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        with urllib.request.urlopen(f"http://127.0.0.1:{ready[1]}/metrics", timeout=10) as response:
            scraped = response.read().decode().splitlines()
        proc.stdin.write("done\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    for line in blocks["003#7"].text.strip().splitlines():
        assert line in scraped, f"{line!r} not in the scrape:\n" + "\n".join(s for s in scraped if "runtime_" in s)


TWO_JOBS = """
import asyncio, sys
from prometheus_client import start_http_server
from mdp import JobConfig, UnifiedRuntime
from mdp.dag import Dag, Node

async def main():
    gate = asyncio.Event()

    async def wait(_in, out):
        await gate.wait()

    async def end(_in, _out):
        pass

    def graph():
        return Dag().add_node(Node("src", wait)).add_node(Node("snk", end)).add_edge("src", "snk")

    server, _ = start_http_server(0, addr="127.0.0.1")
    async with UnifiedRuntime(JobConfig(mode="classic")):
        one, two = UnifiedRuntime(JobConfig(job="one")), UnifiedRuntime(JobConfig(job="two"))
        await one.start_dag(graph())
        await two.start_dag(graph())
        print("ready", server.server_port, flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        gate.set()
        await one.wait()
        await two.wait()

asyncio.run(main())
"""


async def test_note_003_8(blocks: dict[str, Block], scratch: Path) -> None:
    """A running runtime's state is ``UnifiedRuntimeState.RUNNING`` (printed as ``running``) in mode dag."""
    from mdp.compat import UnifiedRuntimeState
    from mdp.config.model import RuntimeMode
    from mdp.dag import Dag, Node

    printed, ns = await run_block(blocks["003#8"], {"Dag": Dag, "Node": Node})
    runtime = ns["runtime"]
    assert printed == "running\ndag\n"
    assert runtime.state is UnifiedRuntimeState.RUNNING
    assert runtime.mode is RuntimeMode.dag
    ns["gate"].set()
    await runtime.wait()
    assert runtime.state is UnifiedRuntimeState.STOPPED


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    reset_default_registry()
    yield
    reset_default_registry()


async def test_note_003_9(blocks: dict[str, Block], fresh_registry: None) -> None:
    """A seed-style function and a plain provider class register, and run from a job's ``dag`` section."""
    from mdp import JobConfig, UnifiedRuntime

    _, ns = await run_block(blocks["003#9"])
    registry = ns["registry"]
    assert registry.get("operator.custom").origin == "mdp"
    assert registry.get("provider.custom").kind == "source"
    seen: list[int] = []

    async def collect(inputs: dict, _out: dict) -> None:
        seen.extend([x async for x in inputs["custom"]])

    registry.register_sink("sink.collect", collect)
    job = JobConfig.from_dict(
        {
            "dag": {
                "nodes": [
                    {"id": "prov", "type": "provider.custom", "params": {"count": 4}},
                    {"id": "custom", "type": "operator.custom", "params": {"threshold": 2}},
                    {"id": "out", "type": "sink.collect"},
                ],
                "edges": [["prov", "custom"], ["custom", "out"]],
            }
        }
    )
    await UnifiedRuntime(job).run()
    assert seen == [0, 10, 2, 3]


PLUGIN = '''
"""A plugin of the original style: a seed-style channel function registered by ``register()``."""
import polars as pl

async def above(inputs, outputs, threshold: float = 0.0):
    """Keep the trades priced above a threshold (frames filtered, watermarks passed on)."""
    (src,) = inputs.values()
    async for item in src:
        if isinstance(item, pl.DataFrame):
            item = item.filter(pl.col("price") > threshold)
        for ch in outputs.values():
            await ch.put(item)
    for ch in outputs.values():
        await ch.close()

def register(registry):
    registry.register_operator("operator.custom", above)
'''


def test_note_003_10(blocks: dict[str, Block], scratch: Path) -> None:
    """The note's YAML nodes, with ``operator.custom`` a seed-style function a plugin registers with
    ``register_operator``, run through ``mdp run`` between a trade source and a store."""
    site = scratch / "site"
    (site / "seed_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "seed_plugin.py").write_text(PLUGIN)
    (site / "seed_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: seed-plugin\nVersion: 0.1\n"
    )
    (site / "seed_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[mdp.components]\nseed = seed_plugin:register\n"
    )
    nodes = yaml.safe_load(blocks["003#10"].text)["nodes"]
    job = {
        "job": "custom",
        "dag": {
            "nodes": [
                {"id": "trades", "type": "source.synthetic", "params": {"symbols": 4, "rate": 200, "duration": "5m"}},
                *nodes,
                {"id": "store", "type": "sink.sqlite", "params": {"path": "custom.sqlite", "kind": "trade"}},
            ],
            "edges": [["trades", "custom"], ["custom", "store"]],
        },
    }
    (scratch / "custom.yaml").write_text(yaml.safe_dump(job))
    summary = json.loads(shell("mdp run --config custom.yaml --json", scratch, extra_path=site, stdout_only=True))
    components = json.loads(shell("mdp components --json", scratch, extra_path=site))
    custom = next(c for c in components["components"] if c["id"] == "operator.custom")
    assert custom["origin"].startswith("plugin seed_plugin:register")
    assert custom["params"]["threshold"]["type"] == "float"
    with contextlib.closing(sqlite3.connect(scratch / "custom.sqlite")) as conn:
        (table,) = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchone()
        kept, low = conn.execute(f"SELECT count(*), min(price) FROM {table}").fetchone()
    assert summary["rows_in"] == 60_000
    assert 0 < kept < 60_000
    assert low > 100.0


async def test_note_003_13(blocks: dict[str, Block]) -> None:
    """The notes' "resilient import" registers ``map_async`` as ``operator.map`` in a registry."""
    from mdp.dag import map_async

    _, ns = await run_block(blocks["003#13"])
    assert ns["registry"].get("operator.map").target is map_async


def test_note_003_15(blocks: dict[str, Block], scratch: Path) -> None:
    """``mdp run`` and the original runner's ``mdp-legacy run --spec`` run the same classic job."""
    (new, _), (old, _) = commands(blocks["003#15"])
    assert "job classic-bars finished" in shell(new, scratch)
    legacy = shell(old, scratch)
    assert "job classic-bars finished" in legacy
    assert "use that from now on" in legacy


# -- the examples the notes name, beyond their blocks ----------------------------------------------------


def test_the_ibkr_to_store_example_runs_with_the_synthetic_feed_swapped_in(scratch: Path) -> None:
    """``examples/run_dag_to_store.py`` (IBKR → DAG → store) end to end, its source swapped by ``--set`` as
    its header says; the job file itself builds wherever the IBKR source is registered."""
    from mdp.config import JobConfig, build_dag

    header = (REPO / "examples" / "run_dag_to_store.yaml").read_text()
    swap = re.search(r"python examples/run_dag_to_store\.py (--set .*?)\n#\s+(--set .*?)\n", header)
    assert swap is not None, "the job file's header shows the swap"
    first = swap.group(1).removesuffix("\\").strip()  # the line continues with a backslash
    command = f"python examples/run_dag_to_store.py {first} {swap.group(2)}"
    assert shell(command, scratch).strip() == "job ibkr-bars: 15,000 trades in, 15 bars written"
    assert bars_in(scratch / "ibkr_bars.sqlite") == 15
    job = JobConfig.from_file(REPO / "examples" / "run_dag_to_store.yaml")
    build_dag(job)  # provider.ibkr.stream is source.ibkr
