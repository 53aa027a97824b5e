"""The docs tell the truth: generated pages are current, and the commands, job files and code run.

- ``docs/configuration.md``, ``components.md`` and ``cli.md`` equal what ``python -m mdp.docgen`` writes;
- every ``mdp ...`` command line in the docs parses against the real CLI;
- ``docs/quickstart.md`` and ``docs/troubleshooting.md`` are replayed in a scratch folder, command by
  command in page order (``cd``, here-documents and ``# file: NAME`` YAML blocks included), and each
  command's output is compared with the page (after masking timings, rates and the folder's path);
  a block preceded by ``<!-- not replayed: why -->`` is only parsed;
- every job YAML block validates through ``load_config``/``build_dag`` (``# fragment`` marks the others);
- every Python block of ``migration.md`` and ``concepts.md`` compiles, and those followed by a ``text``
  block run in a subprocess and print exactly that text.
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
NOT_REPLAYED = re.compile(r"<!--\s*not replayed\b")
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
        return f"docs/{self.page} line {self.line}"

    @property
    def file_name(self) -> str | None:
        """``NAME`` when the block starts with ``# file: NAME``."""
        m = re.match(r"#\s*file:\s*(\S+)", self.text)
        return m.group(1) if m else None

    @property
    def fragment(self) -> bool:
        return self.text.lstrip().startswith("# fragment")


def blocks(page: str) -> list[Block]:
    """The fenced blocks of ``docs/<page>`` in order; a ``<!-- not replayed -->`` line just before a fence
    marks its block as parse-only."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
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
    for page in sorted(p.name for p in DOCS.glob("*.md")):
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


def job_blocks() -> Iterator[Block]:
    for page in ("quickstart.md", "troubleshooting.md", "migration.md", "concepts.md"):
        for block in blocks(page):
            if block.lang == "yaml":
                yield block


@pytest.mark.parametrize("block", list(job_blocks()), ids=lambda b: b.where)
def test_every_yaml_block_loads_and_every_job_builds(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = yaml.safe_load(block.text)
    if block.fragment:
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


# -- Python in migration.md and concepts.md ------------------------------------------------------------------


def python_blocks() -> Iterator[tuple[Block, Block | None]]:
    for page in ("migration.md", "concepts.md"):
        page_blocks = blocks(page)
        for i, block in enumerate(page_blocks):
            if block.lang == "python":
                after = page_blocks[i + 1] if i + 1 < len(page_blocks) else None
                yield block, after if after is not None and after.lang == "text" else None


@pytest.mark.parametrize(("block", "output"), list(python_blocks()), ids=lambda b: b.where if b else "")
def test_every_python_block_compiles(block: Block, output: Block | None) -> None:
    compile(block.text, block.where, "exec")


@pytest.mark.parametrize(
    ("block", "output"), [(b, o) for b, o in python_blocks() if o is not None], ids=lambda b: b.where
)
def test_the_examples_print_what_the_page_shows(block: Block, output: Block, tmp_path: Path) -> None:
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
    assert normalize(proc.stdout) == normalize(output.text), f"{block.where} printed:\n{proc.stdout}"


def test_every_seed_style_example_in_the_migration_guide_runs() -> None:
    runnable = [b for b, _ in python_blocks() if b.page == "migration.md" and not b.fragment]
    assert len(runnable) >= 10
    shown = [b for b, o in python_blocks() if b.page == "migration.md" and o is not None]
    assert shown == runnable, "every runnable migration example shows its output under it"
