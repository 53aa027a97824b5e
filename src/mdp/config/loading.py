"""Read a job file and layer the overrides on it, turning every mistake into a ``ConfigError``.

The layers, lowest first:

1. the file (YAML, or JSON for ``*.json``);
2. ``MDP_*`` environment variables, ``__`` between key segments: ``MDP_JOB``, ``MDP_MODE``,
   ``MDP_RUNTIME__CHANNEL_CAPACITY=4096``, ``MDP_DAG__NODES__TRADES__PARAMS__PATH=x.csv`` (segments are
   case-insensitive; a list is indexed by position or, for nodes, by node id). Only variables whose
   first segment is a top-level key (job, mode, runtime, dag, classic) are read, so ``MDP_HOME`` and
   friends never leak into the job;
3. ``--set key.path=value`` on the command line (``dag.nodes.trades.params.path=x.csv``,
   ``dag.nodes[0].params.path=x.csv`` or ``dag.nodes.0.params.path=x.csv``);
4. ``--mode`` on the command line.

Override values are strings (pydantic converts ``"4096"`` to an int where an int is expected); a value
starting with ``[`` or ``{`` is parsed as a YAML/JSON list or mapping, and ``null`` means None. Last,
``${VAR}`` (or ``${VAR:-default}``) in any string value is replaced from the environment; ``$${`` is a
literal ``${``. Relative paths inside params stay relative to the current directory, as with most CLIs.

A job file is read with bounds, so a mistaken or hostile file is refused in milliseconds with a message
naming it: at most 1 MiB, UTF-8 text, at most 100,000 values once YAML aliases (``*name``) are expanded
(an alias bomb is refused before anything expands it), at most 64 levels of nesting, no alias loop
(``&a {b: *a}``), integers that fit in 64 bits and finite floats (an error here names the key path).

We do the layering by hand rather than with pydantic-settings because list positions and node ids as
path segments, and one error format naming the key path, matter more here than its generic sources.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from mdp.config.model import JobConfig
from mdp.errors import ConfigError

ENV_PREFIX = "MDP_"
_TOP_LEVEL = frozenset(JobConfig.model_fields)
_INTERPOLATION = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$-]+")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

Loc = Sequence[str | int]

#: a job file larger than this is refused unread (the examples are about 1 KB)
MAX_FILE_BYTES = 1 << 20
#: values (scalars, mappings and lists) a document may hold once its YAML aliases are expanded
MAX_VALUES = 100_000
#: levels of nested mappings and lists a document may have
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def format_path(loc: Loc) -> str:
    """``("dag", "nodes", 1, "params")`` → ``"dag.nodes[1].params"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part) is None:  # a key with spaces or dots is quoted: a[' '], not "a. "
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else part
    return out


def translate_validation_error(
    exc: ValidationError,
    *,
    prefix: Loc = (),
    model: type[BaseModel] | None = None,
    context: str = "",
    provenance: Mapping[str, str] | None = None,
) -> ConfigError:
    """Turn a pydantic error into one ``ConfigError`` naming each key path, the value and what was expected.

    Args:
        prefix: where the validated mapping sits in the job file (``("dag", "nodes", 1, "params")``).
        model: the model that was validated, to list the allowed keys when one is unknown.
        context: said after each path, e.g. ``"(node 'bars', operator.bars)"``.
        provenance: key path → the override that set it (``"environment variable MDP_JOB"``).
    """
    problems = [_describe(err, tuple(prefix), model, context, provenance or {}) for err in exc.errors()[:8]]
    if len(problems) == 1:
        return ConfigError(problems[0])
    extra = len(exc.errors()) - len(problems)
    more = f"\n  ... and {extra} more" if extra > 0 else ""
    return ConfigError(f"{len(exc.errors())} problems in the config:\n  " + "\n  ".join(problems) + more)


def _describe(
    err: Any, prefix: tuple[str | int, ...], model: type[BaseModel] | None, context: str, provenance: Mapping[str, str]
) -> str:
    loc = prefix + tuple(err["loc"])
    path = format_path(loc)
    origin = next((src for p, src in provenance.items() if path == p or path.startswith((p + ".", p + "["))), None)
    where = (path or "the top level") + (f" {context}" if context else "") + (f" (set by {origin})" if origin else "")
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(model, tuple(err["loc"])[:-1]) if model else []
        hint = _suggest(key, allowed)
        listed = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"{where}: unknown key {key!r}{hint}{listed}"
    if kind == "missing":
        return f"{where}: required key is missing"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    got = "" if isinstance(value, dict) or _short(value)[:30] in msg else f"; got {_short(value)}"
    return f"{where}: {msg}{got}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _allowed_keys(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> list[str]:
    """Field names (aliases where set) of the model found by walking ``loc`` from ``model``."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = next((f for n, f in tp.model_fields.items() if part in (n, f.alias)), None)
            tp = field.annotation if field else None
        elif get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict and isinstance(part, str):
            tp = get_args(tp)[1]
        else:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted(f.alias or n for n, f in tp.model_fields.items())
    return []


def _unwrap(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


# -- the file ---------------------------------------------------------------------------------------


def load_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML or JSON job file into a mapping (errors name the file, line and column)."""
    p = Path(path)
    if not p.is_file():
        where = "" if p.is_absolute() else f" (relative to the current directory {Path.cwd()})"
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(p)!r} {what}{where}; pass --config with a YAML or JSON job file")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"config file {str(p)!r} is {size:,} bytes; a job file may hold at most {MAX_FILE_BYTES:,} bytes "
            "(is this the data file rather than the job file?)"
        )
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
            "a job file is YAML or JSON text"
        ) from None
    try:
        is_json = p.suffix.lower() == ".json"
        doc = (json.loads(text) if text.strip() else None) if is_json else _load_yaml(text)
    except RecursionError:
        raise ConfigError(
            f"config file {str(p)!r} is nested too deeply to read; a job file needs a few levels of mappings and lists"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {str(p)!r} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {problem}{at}") from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(
            f"config file {str(p)!r} must hold a mapping (job, mode, dag, ...), got a {type(doc).__name__}"
        )
    check_document(doc, origin=f"config file {str(p)!r}")
    return doc


def check_document(doc: Any, *, origin: str = "the config") -> None:
    """Refuse a document too big, too deep or with a number no job could use, naming the key path.

    YAML aliases (``*name``) share one object; a document whose aliases would expand to more than
    :data:`MAX_VALUES` values (a "billion laughs" alias bomb) is refused here, before anything copies or
    validates it, so a hostile or mistaken file costs milliseconds, not minutes and gigabytes. Integers
    must fit in 64 bits and floats must be finite (every number inside mdp is an int64 or a float64).

    Raises:
        ConfigError: naming ``origin`` and the key path.
    """
    sizes: dict[int, int] = {}
    total = _expanded_size(doc, (), 0, sizes, set(), origin)
    if total > MAX_VALUES:
        raise ConfigError(
            f"{origin} expands to more than {MAX_VALUES:,} values (YAML aliases such as *name repeat their "
            "anchor); a job file is far smaller, so remove the repeated aliases"
        )


def _expanded_size(
    value: Any, loc: tuple[str | int, ...], depth: int, sizes: dict[int, int], open_: set[int], origin: str
) -> int:
    """How many values ``value`` holds once every alias is expanded (shared containers counted once each)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return 1
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            digits = len(str(abs(value))) if abs(value) < 10**4000 else 4000
            raise ConfigError(
                f"{format_path(loc) or 'the top level'} ({origin}): the number has {digits} digits and does not "
                "fit in 64 bits; use a smaller value"
            )
        return 1
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{format_path(loc) or 'the top level'} ({origin}): {value!r} is not a usable number")
        return 1
    if not isinstance(value, dict | list):
        return 1
    key = id(value)
    if key in sizes:
        return sizes[key]
    where = format_path(loc) or "the top level"
    if key in open_:
        raise ConfigError(
            f"{where} ({origin}) is a YAML alias of a value that contains it, a loop no job can use; remove the alias"
        )
    if depth >= MAX_DEPTH:
        raise ConfigError(f"{where} ({origin}) is nested more than {MAX_DEPTH} levels deep; flatten it")
    open_.add(key)
    total = 1
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        total += _expanded_size(v, (*loc, k if isinstance(k, int | str) else str(k)), depth + 1, sizes, open_, origin)
        if total > MAX_VALUES:
            break
    open_.discard(key)
    sizes[key] = total
    return total


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through LibYAML when PyYAML has it (several times faster); a document it
    refuses is read again by the Python loader, whose error messages the docs quote."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # a safe loader: plain data only
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def load_config(
    path: str | os.PathLike[str],
    *,
    mode: str | None = None,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobConfig:
    """Load a job file with every override layer applied and validate it."""
    doc = load_document(path)
    default_job = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(path).stem) or "job"
    doc.setdefault("job", default_job)
    return config_from_document(doc, use_env=True, overrides=overrides, mode=mode, environ=environ)


def config_from_document(
    doc: Mapping[str, Any],
    *,
    use_env: bool = True,
    overrides: Sequence[str] = (),
    mode: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> JobConfig:
    """Apply env overrides (if ``use_env``), ``--set`` overrides, ``mode`` and ``${VAR}``; validate."""
    env = os.environ if environ is None else environ
    check_document(doc)  # bounded before the copy below expands any alias
    data: dict[str, Any] = json.loads(json.dumps(doc, default=str))  # a deep copy we may change
    provenance: dict[str, str] = {}
    if use_env:
        provenance.update(apply_env_overrides(data, env))
    for assignment in overrides:
        provenance.update(apply_override(data, assignment))
    if mode is not None:
        data["mode"] = mode
        provenance["mode"] = "--mode"
    data = interpolate(data, env)
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise translate_validation_error(exc, model=JobConfig, provenance=provenance) from None


# -- overrides --------------------------------------------------------------------------------------


def apply_env_overrides(doc: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Apply every ``MDP_<TOP>[__<KEY>...]`` variable to ``doc`` (sorted, so the result is stable).

    Returns:
        key path → the variable that set it.
    """
    applied: dict[str, str] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        segments = name[len(ENV_PREFIX) :].split("__")
        if segments[0].lower() not in _TOP_LEVEL or any(not s for s in segments):
            continue
        source = f"environment variable {name}"
        path = set_path(doc, segments, parse_value(environ[name]), source=source, fold_case=True)
        applied[path] = source
    return applied


def apply_override(doc: dict[str, Any], assignment: str) -> dict[str, str]:
    """Apply one ``key.path=value`` (``--set``); return {key path: what set it}."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r}: expected key.path=value, e.g. dag.nodes.trades.params.path=x.csv")
    source = f"--set {assignment!r}"
    segments = split_path(key.strip(), source=source)
    return {set_path(doc, segments, parse_value(raw), source=source): source}


def split_path(key: str, *, source: str) -> list[str | int]:
    """``"dag.nodes[0].params"`` → ``["dag", "nodes", 0, "params"]`` (``nodes.0`` works too)."""
    parts: list[str | int] = []
    pos = 0
    for m in _SEGMENT.finditer(key):
        gap = key[pos : m.start()]
        if gap not in ("", ".") or (gap == "" and pos and m.group(1)):
            raise ConfigError(f"{source}: cannot read the key path {key!r}; write it like dag.nodes.trades.params.path")
        parts.append(int(m.group(2)) if m.group(2) is not None else m.group(1))
        pos = m.end()
    if pos != len(key) or not parts:
        raise ConfigError(f"{source}: cannot read the key path {key!r}; write it like dag.nodes.trades.params.path")
    return parts


def parse_value(raw: str) -> Any:
    """An override value: a list or mapping if it looks like one, None for ``null``, else the string."""
    text = raw.strip()
    if text in ("null", "~"):
        return None
    if text[:1] in ("[", "{"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override value {raw!r} looks like a list or mapping but does not parse: {exc}") from exc
    return raw


def set_path(
    doc: dict[str, Any], segments: Sequence[str | int], value: Any, *, source: str, fold_case: bool = False
) -> str:
    """Set ``value`` at ``segments`` in ``doc``, creating mappings on the way (validation rejects bad keys).

    A list segment is a position or the ``id`` of one of the list's mappings (a node id).

    Returns:
        the key path that was set, with positions (``dag.nodes[0].params.path``).
    """
    node: Any = doc
    done: list[str | int] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if isinstance(node, dict):
            key = _match_key(node, str(seg), fold_case)
            done.append(key)
            if last:
                node[key] = value
                return format_path(done)
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
        elif isinstance(node, list):
            index = _match_index(node, seg, fold_case, source, format_path(done))
            done.append(index)
            if last:
                node[index] = value
                return format_path(done)
            node = node[index]
        else:
            raise ConfigError(
                f"{source}: {format_path(done)} holds {_short(node)}, not a mapping or list, so it has no key {seg!r}"
            )
    raise ConfigError(f"{source}: an empty key path")


def _match_key(mapping: dict[str, Any], seg: str, fold_case: bool) -> str:
    if seg in mapping or not fold_case:
        return seg
    lowered = seg.lower()
    return next((k for k in mapping if isinstance(k, str) and k.lower() == lowered), lowered)


def _match_index(items: list[Any], seg: str | int, fold_case: bool, source: str, where: str) -> int:
    text = str(seg)
    if text.isdigit():
        index = int(text)
        if index < len(items):
            return index
        raise ConfigError(f"{source}: {where} has {len(items)} entries, so there is no entry [{index}]")
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    for index, item_id in enumerate(ids):
        if item_id == text or (fold_case and isinstance(item_id, str) and item_id.lower() == text.lower()):
            return index
    known = [str(x) for x in ids if x is not None]
    hint = _suggest(text, known)
    raise ConfigError(
        f"{source}: {where} has no entry with id {text!r}{hint}; ids are {', '.join(known) or '(none)'} "
        "(or use a position such as 0)"
    )


# -- ${VAR} -----------------------------------------------------------------------------------------


def interpolate(value: Any, environ: Mapping[str, str], loc: tuple[str | int, ...] = ()) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; an unset variable is a ``ConfigError``."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, (*loc, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{format_path(loc) or 'the top level'}: environment variable {name!r} is not set "
            f"(used in {value!r}); set it or write ${{{name}:-default}}"
        )

    return _INTERPOLATION.sub(replace, value)
