"""Job files the dashboard validates, accepts and starts: the same checks as ``mdp validate``, plus a fence.

An uploaded job file is saved under ``$MDP_HOME/uploads`` and then treated like a file on disk. Before a
job starts, every path in it must lie inside the folders the dashboard was started with (``--allow-dir``,
default: its working directory): any string value of the loaded config (``${VAR}`` already replaced) that
is absolute, starts with ``~``, or holds a ``/`` is resolved against the working directory and checked,
so ``/etc/passwd``, ``../../secret`` or ``${HOME}/.ssh/id_rsa`` is refused with a message naming the key.

A started job is ``python -m mdp run --config FILE [--job NAME]`` in a new session, its output in
``$MDP_HOME/logs/<job>.log``; it registers itself in the job registry like any ``mdp run``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mdp.app.jobs import JobStore
from mdp.app.summary import render_graph
from mdp.config.builder import build_dag, node_specs, node_types, preflight
from mdp.config.loading import load_config
from mdp.config.model import JobConfig, check_job_name
from mdp.errors import ConfigError, MdpError

#: the largest job file accepted by upload (what ``load_config`` accepts from a file)
MAX_UPLOAD_BYTES: Final = 1 << 20
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Validation:
    """What ``mdp validate`` says of a job file: ok with the graph, or the error message it prints."""

    ok: bool
    message: str
    graph: str | None = None
    job: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "graph": self.graph, "job": self.job}


def check_config(path: Path) -> JobConfig:
    """Load, build and preflight ``path`` as ``mdp validate`` does; return the config.

    Raises:
        ConfigError: what ``mdp validate`` would print after ``error:``.
    """
    job = load_config(path)
    dag = build_dag(job)
    preflight(dag, node_specs(job, dag))
    return job


def validate(path: Path) -> Validation:
    """``mdp validate --config path``: the graph and ``ok``, or the message after ``error:``."""
    try:
        job = check_config(path)
    except ConfigError as exc:
        return Validation(False, str(exc))
    dag = build_dag(job)
    graph = render_graph(dag, node_types(job, dag), "text", f"{job.job} ({job.mode.value} mode)")
    return Validation(True, "ok: the job is valid", graph, job.job)


def save_upload(home: Path, filename: str, text: str) -> Path:
    """Save an uploaded job file as ``home/uploads/<stem>-<random>/<stem><suffix>``; return its path.

    The file keeps its name (the job's default name is the file's stem, as with ``mdp run``).

    Raises:
        ConfigError: the upload is too large or not a YAML/JSON file name.
    """
    if len(text.encode()) > MAX_UPLOAD_BYTES:
        raise ConfigError(f"the uploaded job file is over {MAX_UPLOAD_BYTES:,} bytes; job files are a few KB")
    name = _SAFE_NAME.sub("-", Path(filename or "upload.yaml").name) or "upload.yaml"
    if Path(name).suffix.lower() not in (".yaml", ".yml", ".json"):
        raise ConfigError(f"upload {filename!r}: a job file ends in .yaml, .yml or .json")
    folder = home / "uploads" / f"{Path(name).stem}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, mode=0o700)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _strings(value: Any, loc: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{loc}.{key}" if loc else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _strings(item, f"{loc}[{i}]")


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_paths(job: JobConfig, roots: Sequence[Path], cwd: Path) -> None:
    """Refuse a config naming a path outside ``roots`` (see the module docstring).

    Raises:
        ConfigError: naming the key, the path and the allowed folders.
    """
    resolved_roots = [r.resolve() for r in roots]
    for loc, text in _strings(job.model_dump(mode="json"), ""):
        if "://" in text or not (text.startswith(("/", "~")) or "/" in text or text.startswith("..")):
            continue
        target = (cwd / Path(text).expanduser()).resolve()
        if not _inside(target, resolved_roots):
            allowed = ", ".join(str(r) for r in resolved_roots)
            raise ConfigError(
                f"{loc}: {text!r} is outside the folders this dashboard may use ({allowed}); "
                "move the file there, or start mdp dashboard with --allow-dir for its folder"
            )


def check_file_allowed(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` resolved, if it lies inside ``roots``.

    Raises:
        ConfigError: it lies outside (the message lists the allowed folders).
    """
    resolved = path.resolve()
    if not _inside(resolved, [r.resolve() for r in roots]):
        allowed = ", ".join(str(r.resolve()) for r in roots)
        raise ConfigError(f"{path}: outside the folders this dashboard may use ({allowed})")
    return resolved


def start_job(
    config: Path, registry: JobStore, logs: Path, *, name: str | None = None, cwd: Path, wait: float = 10.0
) -> str:
    """Start ``mdp run --config config`` in the background; return the job name once it is registered.

    Raises:
        ConfigError: the job name is bad, the job is running already, or the run exited at once (its
            error message).
        MdpError: the job did not register within ``wait`` seconds (its log is named).
    """
    job = check_config(config)
    job_name = check_job_name(name, source="job") if name else job.job
    current = registry.latest(job_name)
    if current is not None and current.live:
        raise ConfigError(f"job {job_name!r} is already running (pid {current.pid}); stop it first")
    before = current.run_id if current is not None else 0
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{job_name}.log"
    command = [sys.executable, "-m", "mdp", "run", "--config", str(config), "--job", job_name]
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the job outlives the dashboard, like an mdp run in a terminal
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    # reap it when it ends, so a long-running dashboard collects no zombies
    threading.Thread(target=proc.wait, name=f"reap {job_name}", daemon=True).start()
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        record = registry.latest(job_name)
        if record is not None and record.run_id > before:
            return job_name
        code = proc.poll()
        if code is not None:
            text = log_path.read_text(errors="replace").strip().splitlines()
            errors = [line.removeprefix("error: ") for line in text if line.startswith("error: ")]
            raise ConfigError(errors[-1] if errors else f"mdp run exited with {code}; see {log_path}")
        time.sleep(0.05)
    raise MdpError(f"job {job_name!r} did not register within {wait:g}s; see {log_path}")
