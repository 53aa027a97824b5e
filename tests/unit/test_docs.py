"""The docs tell the truth: generated pages are current, and the commands, job files and code run.

- ``docs/configuration.md``, ``components.md`` and ``cli.md`` equal what ``python -m mdp.docgen`` writes;
- every ``mdp ...`` command line in the docs parses against the real CLI;
- ``README.md``, ``docs/quickstart.md``, ``docs/troubleshooting.md`` and ``docs/stores.md`` are replayed
  in a scratch folder, command by command in page order (``cd``, here-documents and ``# file: NAME``
  YAML blocks included), and each command's output is compared with the page (after masking timings,
  rates and the folder's path); the README's main job runs on the trades ``examples/make_trades.py`` writes;
- every YAML block of every page validates: a job through ``load_config``/``build_dag``, a list of
  nodes node by node against each component's params (``# fragment`` marks the other pieces);
- every Python block of every page runs in a subprocess, and one followed by a ``text`` block prints
  exactly that text;
- every block of every page is one of those, or is marked, just before its fence, with
  ``<!-- not replayed: why -->`` (it would install, run for minutes or show pids) or
  ``<!-- illustrative: why -->`` (a diagram, a tree, a message quoted from elsewhere); the set is listed
  in ``test_the_blocks_no_test_runs_are_few_and_say_why``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
import yaml

from mdp import docgen
from mdp.cli import app
from mdp.config import build_dag, load_config, preflight
from mdp.config.registry import ComponentRegistry, builtin_registry

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
#: the folder the troubleshooting page's output was produced in (its path shows in messages)
DOC_FOLDER = "/tmp/my-bars"
NOT_REPLAYED = re.compile(r"<!--\s*(not replayed|illustrative)\b")
MARKER_WITH_REASON = re.compile(r"<!--\s*(not replayed|illustrative):\s*\S.*-->")
#: every page whose blocks these tests read
ALL_PAGES = [*sorted(p.name for p in DOCS.glob("*.md")), "README.md"]
#: pages whose console blocks are replayed command by command
REPLAYED_PAGES = ("quickstart.md", "troubleshooting.md", "stores.md", "README.md")
REDIRECTS = {">", ">>", "2>&1", "&", "|", "&&", ";"}
TIMEOUT = 90


# -- reading the pages ----------------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    lang: str
    text: str
    line: int
    replay: bool = True

    @property
    def where(self) -> str:
        return f"{page_path(self.page).relative_to(REPO)} line {self.line}"

    @property
    def file_name(self) -> str | None:
        """``NAME`` when the block starts with ``# file: NAME``."""
        m = re.match(r"#\s*file:\s*(\S+)", self.text)
        return m.group(1) if m else None

    @property
    def fragment(self) -> bool:
        return self.text.lstrip().startswith("# fragment")


def page_path(page: str) -> Path:
    """``README.md`` at the repository's root, any other page under ``docs/``."""
    return REPO / page if page == "README.md" else DOCS / page


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``page`` in order; a ``<!-- not replayed: why -->`` or ``<!-- illustrative:
    why -->`` line just before a fence marks its block as not run."""
    lines = page_path(page).read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        marked = start > 0 and bool(NOT_REPLAYED.search(lines[start - 1]))
        out.append(Block(page, m.group(1), "\n".join(body) + "\n", start + 1, replay=not marked))
        i += 1
    return out


@dataclass
class Command:
    """A ``$ ...`` line of a console block (with its here-document, if any) and the output shown under it."""

    text: str
    output: str
    block: Block


def commands(block: Block) -> list[Command]:
    """Split a console block into commands and their shown output."""
    out: list[Command] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        cmd = [lines[i][2:]]
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", cmd[0])
        i += 1
        while cmd[-1].endswith("\\") and i < len(lines):  # a command continued on the next line
            cmd[-1] = cmd[-1][:-1].rstrip()
            cmd.append(lines[i].strip())
            i += 1
        if len(cmd) > 1 and not heredoc:
            cmd = [" ".join(cmd)]
        if heredoc:
            while i < len(lines):
                cmd.append(lines[i])
                i += 1
                if lines[i - 1].strip() == heredoc.group(1):
                    break
        shown: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        out.append(Command("\n".join(cmd), "\n".join(shown), block))
    return out


def mdp_argv(command: str) -> list[str] | None:
    """The arguments after ``mdp`` in a shell command line (None if it does not run ``mdp``)."""
    words = shlex.split(command.splitlines()[0])
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words or words[0] != "mdp":
        return None
    args: list[str] = []
    for word in words[1:]:
        if word in REDIRECTS or word.startswith((">", "2>")):
            break
        args.append(word)
    return args


def normalize(text: str, folder: Path | None = None) -> str:
    """Mask what differs from run to run: the scratch folder, timings, rates, object addresses."""
    if folder is not None:
        text = text.replace(str(folder), DOC_FOLDER)
    text = re.sub(r"\b\d+(\.\d+)?s\b", "<t>s", text)
    text = re.sub(r"rows/s(\s+)[\d,]+", r"rows/s\1<n>", text)
    text = re.sub(r"\b\d+(\.\d+)? ms\b", "<t> ms", text)
    text = re.sub(r"0x[0-9a-f]+", "0x...", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", "<time>", text)  # log lines
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


# -- the generated pages --------------------------------------------------------------------------------


def test_generated_pages_match_the_code() -> None:
    stale = [str(p.relative_to(REPO)) for p in docgen.stale(REPO)]
    assert not stale, f"{', '.join(stale)} out of date with the code: run `make docs` and commit the result"


def test_generated_pages_say_they_are_generated_and_how() -> None:
    for name in docgen.pages(REPO):
        first = (DOCS / name).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("<!-- Generated by `python -m mdp.docgen` (`make docs`)"), name


def test_check_exits_1_and_names_the_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    assert docgen.main(["--root", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "docs" / "cli.md").write_text("old text\n")
    capsys.readouterr()
    assert docgen.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "docs/cli.md is stale: run `make docs`" in err
    assert "components.md" not in err


def test_a_component_that_fails_to_import_stops_the_generator() -> None:
    registry = builtin_registry()
    registry.register("operator.broken", "mdp.no_such_module:Nothing", kind="operator", description="broken")
    with pytest.raises(docgen.DocgenError, match=r"operator\.broken.*no_such_module"):
        docgen.render_components(registry)


def test_a_config_field_without_a_description_stops_the_generator() -> None:
    from pydantic import BaseModel

    class Undocumented(BaseModel):
        colour: str = "red"

    with pytest.raises(docgen.DocgenError, match=r"Undocumented\.colour has no description"):
        docgen.model_rows(Undocumented)


def test_the_components_page_documents_every_id_and_param() -> None:
    page = (DOCS / "components.md").read_text(encoding="utf-8")
    registry: ComponentRegistry = builtin_registry()
    sections = dict(re.findall(r"^## (\S+)\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S))
    assert sorted(sections) == registry.ids()
    for entry in registry:
        for param in entry.describe()["params"]:
            assert f"| `{param}` |" in sections[entry.id], f"{entry.id}: param {param} missing"


def test_the_cli_page_documents_every_command_and_option() -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    group: Any = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        assert f"## mdp {name}\n" in page
        for param in cmd.params:
            for opt in param.opts:
                assert f"`{opt}`" in page, f"mdp {name} {opt}"


# -- commands in every page ---------------------------------------------------------------------------------


def all_mdp_commands() -> Iterator[tuple[str, list[str]]]:
    for page in ALL_PAGES:
        for block in blocks(page):
            if block.lang not in ("console", "bash", "sh", "shell"):
                continue
            for command in commands(block):
                argv = mdp_argv(command.text)
                if argv is not None:
                    yield f"{block.where}: mdp {' '.join(argv)}", argv


@pytest.mark.parametrize(("where", "argv"), list(all_mdp_commands()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_mdp_command_in_the_docs_parses(where: str, argv: list[str]) -> None:
    group: Any = typer.main.get_command(app)
    assert argv, f"{where}: no command after mdp"
    assert argv[0] in group.commands, f"{where}: mdp has no command {argv[0]!r}"
    cmd = group.commands[argv[0]]
    parent = typer.Context(group, info_name="mdp")
    cmd.make_context(argv[0], list(argv[1:]), parent=parent)  # raises on an unknown or malformed option


# -- replaying the quickstart and the troubleshooting page ---------------------------------------------------


class Replay:
    """Run a page's commands in a scratch copy of the layout they expect: ``repo/`` with ``examples/``."""

    def __init__(self, root: Path) -> None:
        self.repo = root / "repo"
        self.repo.mkdir()
        (self.repo / "examples").symlink_to(REPO / "examples")
        self.cwd = self.repo
        bin_dir = str(Path(sys.executable).parent)
        # no MDP_* overrides; a wide terminal, so that no summary line wraps where a timing's digits decide
        env = {k: v for k, v in os.environ.items() if not k.startswith("MDP_")}
        path = bin_dir + os.pathsep + env.get("PATH", "")
        self.env = {**env, "MDP_HOME": str(root / "mdp-home"), "PATH": path, "COLUMNS": "200", "LINES": "50"}
        self.last_code = 0

    def run(self, command: Command) -> str | None:
        """Run one command; return its output (None when it was not run)."""
        text = command.text
        if text.startswith("cd "):
            self.cwd = (self.cwd / text[3:].strip()).resolve()
            return None
        if text.startswith(("source ", "make ")) or text.rstrip().endswith("&"):
            return None  # environment changes, installs and background jobs are not replayed
        if text.strip() == "echo $?":
            return str(self.last_code)
        words = shlex.split(text.splitlines()[0])
        if words and words[0] == "sqlite3" and shutil.which("sqlite3") is None:
            return None
        proc = subprocess.run(
            ["bash", "-c", text],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        self.last_code = proc.returncode
        return proc.stdout + proc.stderr

    def python(self, block: Block) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", block.text],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert proc.returncode == 0, f"{block.where} failed:\n{proc.stderr}"
        return proc.stdout


def replay(page: str, replay: Replay) -> None:
    """Replay ``page`` in order, comparing every shown output."""
    page_blocks = blocks(page)
    for i, block in enumerate(page_blocks):
        if not block.replay:
            continue
        if block.lang == "yaml" and block.file_name:
            (replay.cwd / block.file_name).write_text(block.text, encoding="utf-8")
        elif block.lang == "python":
            printed = replay.python(block)
            after = page_blocks[i + 1] if i + 1 < len(page_blocks) else None
            if after is not None and after.lang == "text":
                assert normalize(printed) == normalize(after.text), f"{block.where}: output differs:\n{printed}"
        elif block.lang == "console":
            for command in commands(block):
                out = replay.run(command)
                if out is None:
                    continue  # not run here
                if not command.output.strip():  # the page shows no output: it must have succeeded
                    assert replay.last_code == 0, f"{block.where}: `{command.text}` failed:\n{out}"
                    continue
                expected = normalize(command.output, replay.cwd)
                got = normalize(out, replay.cwd)
                assert got == expected, f"{block.where}: `{command.text.splitlines()[0]}` printed\n{got}"


@pytest.mark.timeout(300)
def test_the_quickstart_runs_as_written(tmp_path: Path) -> None:
    replay("quickstart.md", Replay(tmp_path))


@pytest.mark.timeout(300)
def test_the_troubleshooting_messages_are_the_ones_mdp_prints(tmp_path: Path) -> None:
    # the page starts in the quickstart's folder, with its CSV and job file
    rp = Replay(tmp_path)
    rp.cwd = rp.repo / "my-bars"
    rp.cwd.mkdir()
    rp.env["MDP_HOME"] = str(rp.cwd / ".mdp-home")
    for block in blocks("quickstart.md"):
        if block.lang == "yaml" and block.file_name == "my_job.yaml":
            (rp.cwd / "my_job.yaml").write_text(block.text)
        for command in commands(block) if block.lang == "console" else []:
            if command.text.startswith("cat > my_trades.csv"):
                rp.run(command)
    replay("troubleshooting.md", rp)


@pytest.mark.timeout(300)
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    """The main job included: make its trades, run it, read the bars back, run it from Python."""
    rp = Replay(tmp_path)
    replay("README.md", rp)
    assert (rp.repo / "bars.sqlite").exists()


@pytest.mark.timeout(300)
def test_the_stores_page_runs_as_written(tmp_path: Path, postgres_dsn: str) -> None:
    """Its snippets query stores written by mdp: bars_1m in SQLite, DuckDB and PostgreSQL, trades in Parquet;
    mdp compact merges bars_1m written to Parquet one close at a time."""
    from mdp.records import Bar, to_frame
    from mdp.stores import ParquetStore, SqliteStore, open_store
    from mdp.stores.samples import sample_trades

    rp = Replay(tmp_path)
    rp.env["MDP_POSTGRES_DSN"] = postgres_dsn
    minute, t0 = 60_000_000_000, 1_699_999_200_000_000_000  # 2023-11-14T22:00:00Z
    bars = to_frame(
        [
            Bar(sym, "1m", t0 + i * minute, t0 + (i + 1) * minute, 1.0, 2.0, 0.5, 1.5, 10.0, 15.0, 1.5, 3)
            for sym in ("AAA", "S1")
            for i in range(120)
        ]
    )
    shift = 1_723_161_600_000_000_000 - t0  # the PostgreSQL snippet reads from 2024-08-09
    late = bars.with_columns(pl.col("start") + shift, pl.col("end") + shift)
    tables = {"bar": "bars_1m"}
    for store, frame in (
        (SqliteStore(rp.repo / "bars.sqlite", tables=tables), bars),
        (open_store("duckdb", path=str(rp.repo / "bars.duckdb"), tables=tables), bars),
        (open_store("postgres", dsn=postgres_dsn, tables=tables), late),
    ):
        with store:
            store.write("bar", frame)
    with ParquetStore(rp.repo / "capture", tables={"trade": "kind=trade"}) as capture:
        capture.write("trade", sample_trades(500))
    with ParquetStore(rp.repo / "capture", tables=tables) as live:  # for mdp compact: a part per close
        for close in bars.partition_by("start", maintain_order=True):
            live.write("bar", close)
    replay("stores.md", rp)
    assert (rp.repo / "s1.parquet").exists()


def yaml_blocks() -> Iterator[Block]:
    for page in ALL_PAGES:
        for block in blocks(page):
            if block.lang == "yaml" and block.replay:
                yield block


@pytest.mark.parametrize("block", list(yaml_blocks()), ids=lambda b: b.where)
def test_every_yaml_block_loads_and_every_job_builds(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = yaml.safe_load(block.text)
    if block.fragment:
        return
    if isinstance(doc, list):  # nodes as a job lists them: each one's params validate against its component
        registry = builtin_registry()
        for node in doc:
            assert isinstance(node, dict), f"{block.where}: {node!r} is not a node"
            assert {"id", "type"} <= set(node), f"{block.where}: {node!r} lacks id or type"
            model = registry.get(node["type"]).params_model
            if model is not None:
                model.model_validate(node.get("params") or {})
        return
    assert isinstance(doc, dict), f"{block.where}: not a mapping; mark it '# fragment' if it is one"
    path = tmp_path / (block.file_name or "job.yaml")
    path.write_text(block.text)
    dag = build_dag(load_config(path, environ={}))
    if block.file_name == "my_job.yaml":
        # its input is the CSV the quickstart writes: check the file and the column mapping against it
        console = [b for b in blocks("quickstart.md") if b.lang == "console"]
        write_csv = next(c for b in console for c in commands(b) if "> my_trades.csv" in c.text)
        subprocess.run(["bash", "-c", write_csv.text], cwd=tmp_path, check=True)
        monkeypatch.chdir(tmp_path)
        preflight(dag)


# -- Python in the pages that are not replayed -----------------------------------------------------------------


def python_blocks() -> Iterator[tuple[Block, Block | None]]:
    for page in ALL_PAGES:
        if page in REPLAYED_PAGES:
            continue  # run by the replay, in page order
        page_blocks = blocks(page)
        for i, block in enumerate(page_blocks):
            if block.lang == "python" and block.replay:
                after = page_blocks[i + 1] if i + 1 < len(page_blocks) else None
                yield block, after if after is not None and after.lang == "text" else None


@pytest.mark.parametrize(("block", "output"), list(python_blocks()), ids=lambda b: b.where if b else "")
def test_every_python_block_compiles(block: Block, output: Block | None) -> None:
    compile(block.text, block.where, "exec")


# -- every block is run, or marked with the reason it is not ---------------------------------------------------


def unrun_blocks(page: str) -> list[str]:
    """The blocks of ``page`` that no test runs or checks and that carry no marker."""
    out: list[str] = []
    page_blocks = blocks(page)
    for i, block in enumerate(page_blocks):
        before = page_blocks[i - 1] if i else None
        if not block.replay or block.lang in ("yaml", "python"):
            continue
        if block.lang == "console" and page in REPLAYED_PAGES:
            continue
        if block.lang == "text" and page in docgen.pages(REPO):
            continue  # generated help text, checked by test_generated_pages_match_the_code
        if block.lang == "text" and before is not None and before.lang == "python" and before.replay:
            continue  # what the Python block before it prints
        out.append(f"{block.where}: a {block.lang or 'plain'} block")
    return out


@pytest.mark.parametrize("page", ALL_PAGES)
def test_every_block_is_run_or_marked_with_why_not(page: str) -> None:
    unrun = unrun_blocks(page)
    assert not unrun, (
        f"no test runs {unrun}: make it a yaml, python or (on a replayed page) console block, or mark it "
        "with <!-- not replayed: why --> or <!-- illustrative: why --> just before its fence"
    )
    lines = page_path(page).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if NOT_REPLAYED.search(line):
            assert MARKER_WITH_REASON.search(line), f"{page} line {number}: say why, as <!-- not replayed: why -->"
            assert lines[number : number + 1][0:1] != [], f"{page} line {number}: a marker at the end of the page"
            assert lines[number].startswith("```"), f"{page} line {number}: a marker not just before a fence"


def generated_lines(page: str) -> range:
    """The lines of ``page`` that ``make bench`` writes (benchmark output, between its two marker lines)."""
    lines = page_path(page).read_text(encoding="utf-8").splitlines()
    begin = next((i for i, line in enumerate(lines) if line.startswith("<!-- make bench: generated")), None)
    end = next((i for i, line in enumerate(lines) if line.startswith("<!-- make bench: end")), None)
    return range(0) if begin is None or end is None else range(begin + 1, end + 1)


def test_the_blocks_no_test_runs_are_few_and_say_why() -> None:
    # what a benchmark printed in the run make bench records is output, not a command: not counted
    marked = {
        f"{page}:{block.line}": block.lang
        for page in ALL_PAGES
        for block in blocks(page)
        if not block.replay and block.line not in generated_lines(page)
    }
    # quickstart: make demo (installs), the live job (pids, times, background) x3; troubleshooting and
    # stores: messages quoted from a failing server, a slow machine, a second job holding a file or a
    # port held by another process; performance: the benchmark commands; README: make demo/test, the
    # diagram and the source tree; concepts: the picture of the layers (test_layers.py checks the rule);
    # ibkr: the demo and the fake TWS + job by hand (two processes; tests/e2e/test_ibkr_fake.py runs both)
    assert len(marked) <= 17, f"{len(marked)} blocks are not run: {sorted(marked)}"


@pytest.mark.parametrize(
    ("block", "output"), [(b, o) for b, o in python_blocks() if not b.fragment], ids=lambda b: b.where if b else ""
)
def test_every_python_block_runs_and_prints_what_the_page_shows(
    block: Block, output: Block | None, tmp_path: Path
) -> None:
    (tmp_path / "examples").symlink_to(REPO / "examples")  # examples read job files from the repository
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDP_")}
    proc = subprocess.run(
        [sys.executable, "-c", block.text],
        cwd=tmp_path,
        env={**env, "MDP_HOME": str(tmp_path / "mdp-home")},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, f"{block.where} failed:\n{proc.stderr}"
    if output is not None:
        assert normalize(proc.stdout) == normalize(output.text), f"{block.where} printed:\n{proc.stdout}"


def test_every_seed_style_example_in_the_migration_guide_runs() -> None:
    runnable = [b for b, _ in python_blocks() if b.page == "migration.md" and not b.fragment]
    assert len(runnable) >= 10
    shown = [b for b, o in python_blocks() if b.page == "migration.md" and o is not None]
    assert shown == runnable, "every runnable migration example shows its output under it"
