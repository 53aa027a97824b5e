"""Operator state as bytes: what ``snapshot()`` returns, encoded without pickle, and back.

A state is a tree of ``None``, ``bool``, ``int`` (any size), ``float``, ``str``, ``bytes``, lists, tuples,
dicts (keys of those scalar types), polars DataFrames and numpy arrays. Frames travel as Arrow IPC, arrays
as their raw bytes with dtype and shape, the rest as MessagePack (msgspec): a checkpoint holds no code,
so loading one runs none, and a state written by one process is read by another.

A node's state (:func:`snapshot_node`) is its operator's ``snapshot()`` plus what the runtime keeps for
it: the watermark in and out, its counters and its pending timers.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar, Final

import numpy as np
import polars as pl

from mdp.errors import MdpError
from mdp.records import Gap
from mdp.runtime.operator import Context, Operator

FORMAT: Final = 1
_TAG: Final = "__mdp_state__"
_I64 = (-(2**63), 2**63 - 1)


class SnapshotError(MdpError):
    """A state that cannot be encoded or a snapshot that cannot be read."""


def encode_state(state: Any) -> bytes:
    """Encode ``state`` (see the module docstring for what it may hold) as bytes."""
    import msgspec  # only when a state is encoded: operators import this module for FieldState

    blobs: list[bytes] = []
    tree = _pack(state, blobs, "state")
    return msgspec.msgpack.encode({"format": FORMAT, "tree": tree, "blobs": blobs})


def decode_state(data: bytes) -> Any:
    """Decode what :func:`encode_state` wrote."""
    import msgspec

    try:
        doc = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"this is not an mdp state snapshot ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SnapshotError(f"unknown snapshot format {doc.get('format') if isinstance(doc, dict) else None!r}")
    return _unpack(doc["tree"], doc["blobs"])


class FieldState:
    """Mixin for a stateful object: its state is every attribute but the ones named in ``CONFIG`` (what it
    was built with), so a field added later is in the snapshot without anyone remembering to add it.
    Attributes named in ``PARTS`` are objects with state of their own (``snapshot``/``restore``), or None.
    List it before ``Operator`` in the bases, so its ``snapshot`` is the one used."""

    CONFIG: ClassVar[frozenset[str]] = frozenset()
    PARTS: ClassVar[tuple[str, ...]] = ()

    def snapshot(self) -> dict[str, Any]:
        skip = self.CONFIG.union(self.PARTS)
        own = {k: v for k, v in vars(self).items() if k not in skip and not k.startswith("_mdp_")}
        if not self.PARTS:
            return own
        parts = {name: None if (part := getattr(self, name)) is None else part.snapshot() for name in self.PARTS}
        return {"own": own, "parts": parts}

    def restore(self, state: dict[str, Any]) -> None:
        if not self.PARTS:
            vars(self).update(state)
            return
        vars(self).update(state["own"])
        for name, part in state["parts"].items():
            if part is not None:
                getattr(self, name).restore(part)


def snapshot_node(op: Operator, ctx: Context, input_marks: dict[str, int] | None = None) -> bytes:
    """The state of one running node: its operator's ``snapshot()`` and the runtime's view of it (the
    watermark in and out, counters, pending timers, and the watermark of each input of a fan-in)."""
    timers = ctx.timers
    return encode_state(
        {
            "operator": op.snapshot(),
            "watermark": ctx.watermark,
            "watermark_out": ctx.watermark_out,
            "input_marks": dict(input_marks or {}),
            "counters": dict(ctx.counters),
            "timers": {"processing": timers.pending("processing"), "event": timers.pending("event")},
        }
    )


def restore_node(op: Operator, ctx: Context, data: bytes) -> dict[str, int]:
    """Put a freshly built node back in the state :func:`snapshot_node` recorded; return the inputs'
    watermarks (for the driver of a fan-in)."""
    state = decode_state(data)
    op.restore(state["operator"])
    ctx.watermark, ctx.watermark_out = state["watermark"], state["watermark_out"]
    ctx.counters.clear()
    ctx.counters.update(state["counters"])
    for domain in ("processing", "event"):
        for ts in state["timers"][domain]:
            ctx.notify_at(ts, domain)
    marks: dict[str, int] = state["input_marks"]
    return marks


def _pack(value: Any, blobs: list[bytes], where: str) -> Any:
    if value is None or isinstance(value, bool | float | str | bytes):
        return value
    if isinstance(value, int):
        return value if _I64[0] <= value <= _I64[1] else {_TAG: "int", "text": str(value)}
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    if isinstance(value, Gap):
        return {_TAG: "gap", "symbol": value.symbol, "start": value.start, "end": value.end}
    if isinstance(value, pl.DataFrame):
        buffer = io.BytesIO()
        value.write_ipc(buffer, compression="uncompressed")
        blobs.append(buffer.getvalue())
        return {_TAG: "frame", "blob": len(blobs) - 1}
    if isinstance(value, pl.Series):
        return {_TAG: "series", "frame": _pack(value.to_frame(), blobs, where)}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise SnapshotError(f"{where}: a numpy array of Python objects cannot be snapshotted")
        blobs.append(np.ascontiguousarray(value).tobytes())
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "blob": len(blobs) - 1}
    if isinstance(value, list):
        return [_pack(v, blobs, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_pack(v, blobs, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and _TAG not in value:
            return {k: _pack(v, blobs, f"{where}.{k}") for k, v in value.items()}
        items = [[_pack(k, blobs, f"{where} key"), _pack(v, blobs, f"{where}[{k!r}]")] for k, v in value.items()]
        return {_TAG: "dict", "items": items}
    if isinstance(value, set | frozenset):
        return {_TAG: "set", "items": [_pack(v, blobs, f"{where} item") for v in value]}
    raise SnapshotError(
        f"{where}: a {type(value).__name__} cannot be snapshotted; an operator's snapshot() holds plain values, "
        "lists, dicts, polars frames and numpy arrays"
    )


def _unpack(value: Any, blobs: list[bytes]) -> Any:
    if isinstance(value, list):
        return [_unpack(v, blobs) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag is None:
        return {k: _unpack(v, blobs) for k, v in value.items()}
    if tag == "frame":
        return pl.read_ipc(io.BytesIO(blobs[value["blob"]]))
    if tag == "series":
        return _unpack(value["frame"], blobs).to_series()
    if tag == "ndarray":
        flat = np.frombuffer(blobs[value["blob"]], dtype=np.dtype(value["dtype"]))
        return flat.reshape(value["shape"]).copy()
    if tag == "int":
        return int(value["text"])
    if tag == "gap":
        return Gap(value["symbol"], value["start"], value["end"])
    if tag == "tuple":
        return tuple(_unpack(v, blobs) for v in value["items"])
    if tag == "dict":
        return {_unpack(k, blobs): _unpack(v, blobs) for k, v in value["items"]}
    if tag == "set":
        return {_unpack(v, blobs) for v in value["items"]}
    raise SnapshotError(f"unknown state tag {tag!r} in a snapshot")


__all__ = ["FieldState", "SnapshotError", "decode_state", "encode_state", "restore_node", "snapshot_node"]
