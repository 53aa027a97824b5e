"""Generate the reference pages of ``docs/`` from the code, so they cannot drift from it.

::

    python -m mdp.docgen            write docs/configuration.md, docs/components.md and docs/cli.md
    python -m mdp.docgen --check    write nothing; exit 1 naming every page that differs from the code

``make docs`` runs the first; ``tests/unit/test_docs.py`` runs the check. The sources:

- ``configuration.md``: the pydantic models of :mod:`mdp.config.model` (every key, its type, default,
  constraints and description, section by section), the override rules of :mod:`mdp.config.loading`
  (its module docstring) and the job files in ``examples/``;
- ``components.md``: every built-in id of :func:`mdp.config.registry.builtin_registry` with its class
  and the fields of its ``Params`` model (installed plugins are left out: they are not part of mdp).
  A component that cannot be imported stops the generator with an error naming it;
- ``cli.md``: the click command behind ``mdp`` (``typer.main.get_command``), read through click's
  introspection rather than ``--help``, whose layout depends on the terminal.

A model field without a ``description`` takes it from :data:`FIELD_NOTES`; a field described nowhere
stops the generator, so a new key cannot reach the docs undocumented.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import re
import sys
import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mdp.config import loading, model
from mdp.config.registry import ComponentEntry, ComponentRegistry, builtin_registry
from mdp.errors import MdpError

#: the file the generated pages live in, relative to the repository root
DOCS_DIR = Path("docs")
#: how to regenerate, said at the top of every generated page and by ``--check``
REGENERATE = "make docs"
COMMAND = "python -m mdp.docgen"

#: descriptions of job-file keys whose model field has none (``Model.field`` → text)
FIELD_NOTES: dict[str, str] = {
    "JobConfig.mode": "`dag` (the `dag:` section) or `classic` (the `classic:` section). Without `mode`, a "
    "file holding only a `classic:` section is classic and any other is dag; `--mode` on the command line wins",
    "JobConfig.runtime": "channel sizes for every edge (see [`runtime`](#runtime))",
    "JobConfig.dag": "the graph: nodes and edges (see [`dag`](#dag)); needed when the mode is `dag`",
    "JobConfig.classic": "the linear pipeline (see [`classic`](#classic)); needed when the mode is `classic`",
    "DagSpec.nodes": "the nodes (see [`dag.nodes[]`](#dagnodes)), at least one",
    "DagSpec.edges": "the edges (see [`dag.edges[]`](#dagedges)); a node without edges is an error unless it is "
    "a source",
    "NodeSpec.params": "the component's params, validated against its `Params` model: see "
    "[components.md](components.md)",
    "ComponentSpec.params": "the component's params, validated against its `Params` model: see "
    "[components.md](components.md)",
    "EdgeSpec.from_": "upstream node id; `node.port` (say `trades.deadletter`) leaves from that output port",
    "EdgeSpec.to": "downstream node id",
    "EdgeSpec.port": "the upstream node's output port (`out`, or one the component declares, such as "
    "`deadletter` or `late`)",
    "EdgeSpec.capacity": "messages this edge's channel holds; none: `runtime.channel_capacity`",
    "ClassicSpec.source": "the source component (its `type` must be a source)",
    "ClassicSpec.operators": "operators applied in order (each `type` must be an operator)",
    "ClassicSpec.batcher": "an optional last operator before the sink, typically `operator.buffer`",
    "ClassicSpec.sink": "the sink component (its `type` must be a sink)",
}


class DocgenError(MdpError):
    """A page cannot be generated (a component fails to import, a field is described nowhere)."""


# -- text helpers ---------------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|func|mod|data|meth|attr|exc):`~?([^`]+)`")


def rst_to_md(text: str, lang: str = "text") -> str:
    """Turn a docstring's reST into Markdown: ``x`` → `x`, roles → code, ``::`` blocks → fenced blocks."""
    text = inspect.cleandoc(text)

    def role(m: re.Match[str]) -> str:
        raw = m.group(0)
        name = m.group(1)
        return f"`{name.rsplit('.', 1)[-1]}`" if ":`~" in raw else f"`{name}`"

    text = _ROLE.sub(role, text).replace("``", "`")
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(head + ":")
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", f"```{lang}", *inspect.cleandoc("\n".join(block)).splitlines(), "```", ""]
            continue
        out.append(line)
        i += 1
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def cell(text: str) -> str:
    """Escape text for a Markdown table cell (a ``|`` not yet escaped, and line breaks)."""
    return re.sub(r"(?<!\\)\|", r"\\|", text).replace("\n", " ").strip()


def code(value: str) -> str:
    """Inline code that survives a table cell (``|`` escaped)."""
    return f"`{cell(value)}`"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def header(title: str, sources: str) -> list[str]:
    """The first lines of a generated page: where it comes from and how to regenerate it."""
    return [
        f"<!-- Generated by `{COMMAND}` (`{REGENERATE}`) from {sources}. Do not edit: change the code and "
        "regenerate. -->",
        "",
        f"# {title}",
        "",
        f"*Generated from {sources} by `{REGENERATE}`.*",
        "",
    ]


# -- configuration.md ------------------------------------------------------------------------------------

_SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("top level", model.JobConfig),
    ("runtime", model.RuntimeSpec),
    ("checkpoint", model.CheckpointSpec),
    ("dag", model.DagSpec),
    ("dag.nodes[]", model.NodeSpec),
    ("dag.edges[]", model.EdgeSpec),
    ("classic", model.ClassicSpec),
    ("classic.source, classic.operators[], classic.batcher, classic.sink", model.ComponentSpec),
)


def _heading(section: str) -> str:
    """``"dag.nodes[]"`` → ``"`dag.nodes[]`"``; each comma-separated key path in code."""
    if section == "top level":
        return "Top level"
    return ", ".join(f"`{part.strip()}`" for part in section.split(","))


def _section_of(cls: type[BaseModel]) -> str:
    for name, section in _SECTIONS:
        if section is cls:
            return name
    raise DocgenError(f"config model {cls.__name__} is used in JobConfig but has no section in mdp.docgen")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading made of inline code."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def type_label(tp: Any) -> str:
    """A job file reader's name for an annotation: ``int | null``, ``'classic' | 'dag'``, ``list of …``."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(type_label(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is list:
        return f"list of {type_label(args[0])}"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        section = _section_of(tp)
        return f"mapping ([{section.split(',')[0]}](#{_anchor(_heading(section))}))"
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    return str(tp).replace("typing.", "")


def default_label(field: FieldInfo) -> str:
    """The default as YAML would spell it, or *required*."""
    if field.is_required():
        return "*required*"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "all defaults"
    if isinstance(value, enum.Enum):
        value = value.value
    return code(json.dumps(value))


def constraint_label(field: FieldInfo) -> str:
    """Bounds, lengths and patterns of a field, from its metadata."""
    parts: list[str] = []
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge):
            parts.append(f">= {meta.ge}")
        elif isinstance(meta, annotated_types.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, annotated_types.Le):
            parts.append(f"<= {meta.le}")
        elif isinstance(meta, annotated_types.Lt):
            parts.append(f"< {meta.lt}")
        elif isinstance(meta, annotated_types.MinLen):
            parts.append("not empty" if meta.min_length == 1 else f"at least {meta.min_length} long")
        elif getattr(meta, "pattern", None):
            parts.append(f"matches `{meta.pattern}`")
    return ", ".join(parts)


def field_description(cls: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The field's description, else its note in :data:`FIELD_NOTES` (else it is an error)."""
    if field.description:
        return field.description
    note = FIELD_NOTES.get(f"{cls.__name__}.{name}")
    if note is None:
        raise DocgenError(
            f"{cls.__name__}.{name} has no description: give the field description=... in {cls.__module__} "
            "(or a note in mdp.docgen.FIELD_NOTES)"
        )
    return note


def model_rows(cls: type[BaseModel]) -> list[list[str]]:
    """One table row per field of ``cls``: key, type, default, constraints, description."""
    return [
        [
            code(field.alias or name),
            type_label(field.annotation),
            default_label(field),
            constraint_label(field),
            field_description(cls, name, field),
        ]
        for name, field in cls.model_fields.items()
    ]


def _example(root: Path, name: str) -> list[str]:
    path = root / name
    if not path.is_file():
        raise DocgenError(f"the example job {path} is missing; the configuration page quotes it")
    return [f"`{name}`:", "", "```yaml", *path.read_text(encoding="utf-8").rstrip().splitlines(), "```", ""]


def render_configuration(root: Path) -> str:
    """The job file reference: the models, the override rules and two example jobs."""
    sources = "`mdp.config.model`, `mdp.config.loading` and `examples/`"
    lines = header("Job file reference", sources)
    lines += [rst_to_md(model.__doc__ or "", "yaml"), ""]
    lines += [
        "The sections below list every key. A key that is not listed is an error (the message names its key "
        "path and the allowed keys). Loaded from a file, `job` defaults to the file's name without its suffix.",
        "",
    ]
    for name, cls in _SECTIONS:
        lines += [f"## {_heading(name)}", "", rst_to_md(cls.__doc__ or ""), ""]
        lines += table(["key", "type", "default", "constraints", "description"], model_rows(cls))
        lines.append("")
    lines += ["## Overrides and environment variables", "", rst_to_md(loading.__doc__ or ""), ""]
    lines += ["## Examples", ""]
    for example in ("examples/demo.yaml", "examples/classic_bars.yaml"):
        lines += _example(root, example)
    return "\n".join(lines).rstrip() + "\n"


# -- components.md ---------------------------------------------------------------------------------------


def load_all(registry: ComponentRegistry) -> list[tuple[ComponentEntry, type[Any]]]:
    """Import every component of ``registry``.

    Raises:
        DocgenError: naming each component that fails to import, and why.
    """
    loaded: list[tuple[ComponentEntry, type[Any]]] = []
    failed: list[str] = []
    for entry in registry:
        try:
            loaded.append((entry, entry.load()))
        except MdpError as exc:
            failed.append(f"  {entry.id}: {exc}")
    if failed:
        raise DocgenError("cannot document components that fail to import:\n" + "\n".join(failed))
    return loaded


def _summary(doc: str | None) -> str:
    """The first paragraph of a docstring, as Markdown on one line."""
    if not doc:
        return ""
    return " ".join(rst_to_md(doc).split("\n\n")[0].split())


def render_components(registry: ComponentRegistry | None = None) -> str:
    """Every component id with its class, ports and params."""
    reg = registry or builtin_registry()
    entries = load_all(reg)
    sources = "the component registry (`mdp.config.registry`) and each component's `Params` model"
    lines = header("Components", sources)
    lines += [
        "A node's `type` in a job file is one of these ids; its `params` are checked against the component's "
        "`Params` model, and an unknown or misspelt key is an error naming the key path. `mdp components` "
        "prints the same list (plus installed plugins, which this page leaves out).",
        "",
        "Durations (type `duration`) are strings with a unit: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`, as in "
        "`'250ms'`, `'5s'`, `'1m'`. A bare integer is read as nanoseconds, so `5` means 5 ns, not 5 s.",
        "",
    ]
    lines += table(
        ["id", "kind", "what it does"], [[f"[`{e.id}`](#{_anchor(e.id)})", e.kind, e.description] for e, _ in entries]
    )
    lines.append("")
    for entry, cls in entries:
        info = entry.describe()
        what = entry.description[:1].upper() + entry.description[1:]
        lines += [f"## {entry.id}", "", f"{what}. Kind: {entry.kind}.", ""]
        lines += [f"Class `{entry.target_name}`: {_summary(cls.__doc__)}", ""]
        outputs = list(cls.outputs) if isinstance(cls.outputs, tuple | list) else []
        if outputs:
            lines += ["Output ports declared by the class: " + ", ".join(f"`{p}`" for p in outputs) + ".", ""]
        else:
            lines += ["No output ports.", ""]
        params: dict[str, dict[str, Any]] = info["params"]
        if not params:
            lines += ["No params.", ""]
            continue
        rows = [
            [
                code(name),
                code(p["type"]),
                "*required*" if p["required"] else code(json.dumps(p["default"])),
                p["description"],
            ]
            for name, p in params.items()
        ]
        lines += table(["param", "type", "default", "description"], rows)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- cli.md ----------------------------------------------------------------------------------------------


def _param_default(param: Any, ctx: Any) -> str:
    if param.required:
        return "*required*"
    value = param.get_default(ctx)
    if getattr(param, "is_flag", False) and isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == []:
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    return code(str(value))


def _param_type(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    label = str(param.display_type(ctx)).strip("<>")
    if getattr(param, "multiple", False):
        label = label.removeprefix("list[").removesuffix("]") + ", repeatable"
    return label


def render_cli(app: typer.Typer | None = None) -> str:
    """Every command of ``mdp`` with its options, types, defaults and help."""
    if app is None:
        from mdp import cli

        app = cli.app
        intro = rst_to_md(cli.__doc__ or "")
    else:
        intro = ""
    group: Any = typer.main.get_command(app)
    lines = header("Command line: `mdp`", "the `mdp` command's definitions (`mdp.cli`)")
    lines += [rst_to_md(group.help or ""), "", intro, ""] if intro else [rst_to_md(group.help or ""), ""]
    lines += ["Every command also takes `--help`.", ""]
    commands = {name: cmd for name, cmd in group.commands.items() if not getattr(cmd, "hidden", False)}
    lines += table(
        ["command", "what it does"],
        [[f"[`mdp {name}`](#mdp-{name})", cmd.get_short_help_str(limit=200)] for name, cmd in commands.items()],
    )
    lines.append("")
    for name, cmd in commands.items():
        ctx = typer.Context(cmd, info_name=name)
        pieces = " ".join(cmd.collect_usage_pieces(ctx))
        lines += [f"## mdp {name}", "", "```text", f"mdp {name} {pieces}".rstrip(), "```", ""]
        lines += [rst_to_md(cmd.help or ""), ""]
        rows = []
        for param in cmd.params:
            if getattr(param, "hidden", False):
                continue
            names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            rows.append([names, _param_type(param, ctx), _param_default(param, ctx), param.help or ""])
        if rows:
            lines += table(["option", "type", "default", "help"], rows)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- the command -----------------------------------------------------------------------------------------


def repo_root() -> Path:
    """The repository this module runs from (``src/mdp/docgen.py`` → the folder holding ``pyproject.toml``)."""
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def pages(root: Path) -> dict[str, Callable[[], str]]:
    """Generated page file name → the function that renders it."""
    return {
        "configuration.md": lambda: render_configuration(root),
        "components.md": render_components,
        "cli.md": render_cli,
    }


def generate(root: Path) -> dict[Path, str]:
    """Render every generated page: path under ``root`` → its text."""
    return {root / DOCS_DIR / name: render() for name, render in pages(root).items()}


def stale(root: Path) -> list[Path]:
    """The generated pages whose file under ``root`` is missing or differs from what the code generates."""
    out = []
    for path, text in generate(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(path)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated pages, or with ``--check`` report the stale ones (exit 1)."""
    parser = argparse.ArgumentParser(prog=COMMAND, description="generate docs/{configuration,components,cli}.md")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = (args.root or repo_root()).resolve()
    try:
        rendered = generate(root)
    except DocgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        bad = [p for p, text in rendered.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        for path in bad:
            print(f"{path.relative_to(root)} is stale: run `{REGENERATE}` and commit the result", file=sys.stderr)
        if not bad:
            print(f"ok: {', '.join(str(p.relative_to(root)) for p in rendered)} are up to date")
        return 1 if bad else 0
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(root)}")
        else:
            print(f"unchanged {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
