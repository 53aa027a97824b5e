"""Resume in ``mdp run``: find a job's last checkpoint in its store, check it fits, and hand it to the runtime.

A job is checkpointed when its graph ends in exactly one store sink, every node feeds that sink, and the
store keeps checkpoints (SQLite, DuckDB, PostgreSQL, Parquet); ``checkpoint: false`` turns it off. The
checkpoint is kept under ``checkpoint.key`` (default: the job name). Its fingerprints say what it was
taken from: the graph (each node's component and params, the edges) and the inputs (each file source's
path and the hash of its first MiB of content, decompressed for ``.gz``, checked on as many bytes as
were hashed then, so a capture file that grew still resumes). A checkpoint that does
not fit is refused with a paragraph naming what changed; ``--fresh`` forgets it and starts at row 0.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdp.config.model import JobConfig, RuntimeMode
from mdp.errors import ConfigError
from mdp.runtime.checkpoints import Checkpoint, CheckpointBoard, fingerprint
from mdp.runtime.graph import Dag
from mdp.runtime.operator import Source
from mdp.runtime.snapshots import decode_state
from mdp.stores.base import Store
from mdp.stores.sink import StoreSink

#: bytes of an input file that identify it (an appended file keeps them)
HEAD_BYTES = 1 << 20


@dataclass
class Resume:
    """What ``mdp run`` starts with: the board (None: no checkpoints) and the line to print, if it resumes."""

    board: CheckpointBoard | None
    line: str | None = None
    checkpoint: Checkpoint | None = None


def checkpoint_sink(dag: Dag) -> tuple[str, StoreSink] | None:
    """The one store sink a checkpointed job commits through, if the graph has exactly one, every node
    feeds it and its store keeps checkpoints; else None (the job runs without checkpoints)."""
    found = _checkpoint_sink_or_why(dag)
    return None if isinstance(found, str) else found


def _checkpoint_sink_or_why(dag: Dag) -> tuple[str, StoreSink] | str:
    """:func:`checkpoint_sink`, or why the graph cannot be checkpointed, in words for the user."""
    sinks = [(n.name, n.operator) for n in dag.nodes if isinstance(n.operator, StoreSink)]
    if not sinks:
        return "it has no store sink"
    if len(sinks) > 1:
        return f"it has {len(sinks)} store sinks ({', '.join(name for name, _ in sinks)}), not one"
    bare = [n.name for n in dag.nodes if n.operator is None]
    if bare:
        return f"node(s) {', '.join(bare)} are plain functions, whose state cannot be saved"
    name, sink = sinks[0]
    assert isinstance(sink, StoreSink)
    if not sink.store.keeps_checkpoints:
        return f"its store ({sink.store.backend}) keeps no checkpoints"
    feeding = {name}
    changed = True
    while changed:
        changed = False
        for edge in dag.edges:
            if edge.dst in feeding and edge.src not in feeding:
                feeding.add(edge.src)
                changed = True
    aside = sorted({n.name for n in dag.nodes} - feeding)
    if aside:
        return f"node(s) {', '.join(aside)} do not feed its store sink {name}"
    return name, sink


def graph_prints(job: JobConfig, dag: Dag) -> dict[str, str]:
    """One fingerprint per node (component and params) and one of the edges."""
    prints: dict[str, str] = {}
    if job.mode is RuntimeMode.dag and job.dag is not None:
        for node in job.dag.nodes:
            prints[f"node {node.id}"] = fingerprint([node.type, node.params])
    elif job.classic is not None:
        c = job.classic
        specs = [c.source, *c.operators, *([c.batcher] if c.batcher else []), c.sink]
        for name, spec in zip(dag.names(), specs, strict=False):
            prints[f"node {name}"] = fingerprint([spec.type, spec.params])
    prints["edges"] = fingerprint(sorted([e.src, e.dst, e.port] for e in dag.edges))
    return prints


def _head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the file's content (a gzip file's decompressed content)."""
    if not path.is_file():
        return b""
    if path.suffix == ".gz":
        import gzip
        import zlib

        out = bytearray()
        try:
            with gzip.open(path, "rb") as fh:
                while len(out) < size and (chunk := fh.read(min(65536, size - len(out)))):
                    out += chunk
        except (OSError, EOFError, zlib.error):  # a cut or broken file: what could be read (the source says more)
            pass
        return bytes(out)
    with open(path, "rb") as fh:
        return fh.read(size)


def _print(path: Path, size: int = HEAD_BYTES) -> str:
    head = _head(path, size)
    return f"{path.resolve()} first {len(head)} bytes {hashlib.sha256(head).hexdigest()[:16]}"


def input_prints(dag: Dag, then: dict[str, str] | None = None) -> dict[str, str]:
    """Each file source's input: its path and the hash of its first MiB of content (of as many bytes as
    ``then`` hashed, so a file that grew since keeps its print)."""
    prints: dict[str, str] = {}
    for node in dag.nodes:
        path = getattr(node.operator, "path", None)
        if not isinstance(node.operator, Source) or not isinstance(path, Path):
            continue
        size = HEAD_BYTES
        earlier = (then or {}).get(node.name, "").split(" first ")
        if len(earlier) == 2 and earlier[1].split(" ")[0].isdigit():
            size = int(earlier[1].split(" ")[0])
        prints[node.name] = _print(path, size)
    return prints


def _changes(kind: str, then: dict[str, str], now: dict[str, str]) -> list[str]:
    changed = sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))
    out = []
    for key in changed:
        if key not in now:
            out.append(f"{kind} {key} is gone")
        elif key not in then:
            out.append(f"{kind} {key} is new")
        elif kind == "input":
            out.append(f"input of {key} was {then[key]!r}, now {now[key]!r}")
        else:
            out.append(f"{key} changed (its component, params or connections)")
    return out


def _loads(text: str) -> dict[str, str]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"graph": text}
    return value if isinstance(value, dict) else {"graph": text}


def prepare(job: JobConfig, dag: Dag, name: str, *, fresh: bool) -> Resume:
    """The checkpoints of this run of ``job``: a board resuming the last checkpoint (unless ``fresh``).

    Raises:
        ConfigError: the last checkpoint was taken from another graph or other inputs.
        StoreError: the store cannot be opened or read.
    """
    if not job.checkpoint.enabled:
        return Resume(None)
    found = _checkpoint_sink_or_why(dag)
    if isinstance(found, str):  # said at every start: the user learns it before a crash, not after
        return Resume(
            None,
            f"note: job {name} takes no checkpoints because {found}; stopped or killed, it will start again "
            "from the beginning (see docs/recovery.md; `checkpoint: false` in the job says this is meant)",
        )
    key = job.checkpoint.key or name
    graph = graph_prints(job, dag)
    inputs = input_prints(dag)
    board_args: dict[str, Any] = {
        "interval_ns": job.checkpoint.interval,
        "graph": json.dumps(graph, sort_keys=True),
        "inputs": json.dumps(inputs, sort_keys=True),
    }
    store = copy.deepcopy(found[1].store)
    with store:
        if fresh:
            store.drop_checkpoint(key)
            return Resume(CheckpointBoard(key, **board_args))
        last = store.load_checkpoint(key)
    if last is None:
        return Resume(CheckpointBoard(key, **board_args))
    then_inputs = _loads(last.inputs)
    now_inputs = input_prints(dag, then_inputs)
    changes = _changes("graph", _loads(last.graph), graph) + _changes("input", then_inputs, now_inputs)
    if changes:
        raise ConfigError(
            f"job {name!r} has a checkpoint (epoch {last.epoch}, {last.rows:,} rows in) in {store.location}, "
            f"but it was taken from another job: {'; '.join(changes)}. Resuming it would go on from a state "
            f"this job never had. Run again with --fresh to start from the beginning (the rows already in "
            f"stay; rows written again replace them by key), put the job back as it was to resume, or give "
            f"this job a checkpoint.key of its own (now {key!r})."
        )
    states = decode_state(last.state)
    board = CheckpointBoard(key, **board_args, restore=states, last_epoch=last.epoch, rows=last.rows)
    line = f"resumed job {name} from checkpoint {last.epoch}: {last.rows} rows already in"
    return Resume(board, line, last)


def last_checkpoint(job: JobConfig, dag: Dag, name: str) -> tuple[Checkpoint | None, str]:
    """The last checkpoint of ``job`` and where it is kept (for ``mdp status``); (None, why) if none."""
    if not job.checkpoint.enabled:
        return None, "checkpoints are off (checkpoint: false)"
    found = _checkpoint_sink_or_why(dag)
    if isinstance(found, str):
        return None, f"this job is not checkpointed: {found} (it needs exactly one store sink that every node feeds)"
    store: Store = copy.deepcopy(found[1].store)
    with store:
        return store.load_checkpoint(job.checkpoint.key or name), store.location


def checkpoint_status(config_path: str | None, name: str) -> dict[str, Any]:
    """What ``mdp status`` says of a job's last checkpoint: ``{"checkpoint": summary or None, "where": ...}``
    (``where``: the store, or why there is none to show). Never raises: status must show the rest."""
    if not config_path:
        return {"checkpoint": None, "where": "the run recorded no config file"}
    try:
        from mdp.config.builder import build_dag
        from mdp.config.loading import load_config

        job = load_config(Path(config_path))
        checkpoint, where = last_checkpoint(job, build_dag(job), name)
    except Exception as exc:  # a moved config, a store another process locks: say so, show the rest
        return {"checkpoint": None, "where": f"cannot be read ({type(exc).__name__}: {exc})"}
    return {"checkpoint": None if checkpoint is None else checkpoint.summary(), "where": where}


def render_checkpoint(status: dict[str, Any]) -> str:
    """The ``checkpoint`` line of ``mdp status``."""
    from mdp.durations import format_time

    cp = status["checkpoint"]
    if cp is None:
        return f"checkpoint none ({status['where']})"
    sources = ", ".join(
        f"{node} at row {pos.get('rows_emitted', pos.get('offset', 0)):,}"
        for node, pos in sorted(cp["offsets"].items())
    )
    stop = ", taken at a stop" if cp["final"] else ""
    return (
        f"checkpoint {cp['epoch']} at {format_time(cp['committed_ns'])}{stop}: {cp['rows']:,} rows in"
        f"{'; ' + sources if sources else ''} (in {status['where']})"
    )


__all__ = ["Resume", "checkpoint_sink", "checkpoint_status", "last_checkpoint", "prepare", "render_checkpoint"]
