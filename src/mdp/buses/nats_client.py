"""The NATS JetStream edge shared by ``sink.nats`` and ``source.nats``: params, connecting, the stream.

nats-py stays in this module and the two components: everything it raises is translated to
:class:`~mdp.errors.BusError` with a message that says what to change. The import is lazy, so a job
without a bus never loads the client.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from mdp.durations import DurationNs
from mdp.errors import BusError

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext


log = logging.getLogger(__name__)


class NatsParams(BaseModel):
    """Where the bus is: the fields ``sink.nats`` and ``source.nats`` share."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="nats://127.0.0.1:4222", description="NATS server URL (or several, comma-separated)")
    stream: str = Field(min_length=1, description="JetStream stream name, e.g. MD_TRADES")
    subject: str = Field(
        min_length=1, description="subject prefix; partition k is published on '<subject>.p<k>', e.g. md.trades"
    )
    partitions: int = Field(
        ge=1, le=4096, description="number of partitions; a symbol's is crc32(symbol) % partitions (fixed per stream)"
    )
    connect_timeout: DurationNs = Field(default=5_000_000_000, description="give up connecting after this ('5s')")
    request_timeout: DurationNs = Field(
        default=10_000_000_000,
        description="a JetStream API request (stream info, consumer creation) waits this ('10s')",
    )


async def connect(params: NatsParams) -> tuple[Client, JetStreamContext]:
    """A connection and its JetStream context.

    Raises:
        BusError: nats-py is not installed, or the server cannot be reached.
    """
    try:
        import nats
    except ImportError as exc:  # pragma: no cover - nats-py is a dependency
        raise BusError("the NATS bus needs nats-py; install it with 'pip install nats-py'") from exc
    servers = [u.strip() for u in params.url.split(",") if u.strip()]

    async def report(exc: Exception) -> None:  # nats-py would log each one at error level itself
        log.warning("NATS connection to %s: %s: %s (reconnecting)", params.url, type(exc).__name__, exc)

    try:
        nc = await nats.connect(
            servers,
            connect_timeout=params.connect_timeout / 1e9,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            error_cb=report,
        )
    except Exception as exc:  # nats-py raises a variety: NoServersError, OSError, TimeoutError
        raise BusError(
            f"cannot connect to NATS at {params.url!r}: {type(exc).__name__}: {exc}; start the server "
            "(nats-server -js) or fix params.url"
        ) from exc
    return nc, nc.jetstream(timeout=params.request_timeout / 1e9)


async def stream_subjects(js: JetStreamContext, params: NatsParams) -> list[str]:
    """The subjects of the stream, which must take the partition subjects, and be cut in as many partitions.

    Raises:
        BusError: the stream does not exist, does not take ``<subject>.p<k>``, or its description (written
            when ``sink.nats`` created it) gives another number of partitions for the subject.
    """
    import nats.js.errors

    try:
        info = await js.stream_info(params.stream)
    except nats.js.errors.NotFoundError as exc:
        raise BusError(
            f"JetStream stream {params.stream!r} does not exist; create it (sink.nats with create_stream: true, "
            f"or 'nats stream add {params.stream} --subjects \"{params.subject}.>\"') or fix params.stream"
        ) from exc
    except Exception as exc:
        raise bus_error(f"cannot read stream {params.stream!r}", exc) from exc
    subjects = list(info.config.subjects or [])
    if not any(_covers(s, f"{params.subject}.p0") for s in subjects):
        raise BusError(
            f"JetStream stream {params.stream!r} takes subjects {subjects}, not {params.subject}.p<k>; "
            f"add '{params.subject}.>' to the stream or fix params.subject"
        )
    found = described_partitions(info.config.description, params.subject)
    if found is not None and found != params.partitions:
        raise BusError(
            f"JetStream stream {params.stream!r} holds {params.subject} in {found} partitions, not "
            f"{params.partitions}; set params.partitions to {found} (a symbol's partition depends on the count)"
        )
    return subjects


def description(params: NatsParams) -> str:
    """The description ``sink.nats`` gives a stream it creates: it records the partition count."""
    return f"mdp: {params.subject} in {params.partitions} partitions"


def described_partitions(text: str | None, subject: str) -> int | None:
    """The partition count a stream's description records for ``subject`` (None: not recorded)."""
    prefix = f"mdp: {subject} in "
    if not text or not text.startswith(prefix):
        return None
    count = text[len(prefix) :].split(" ", 1)[0]
    return int(count) if count.isdigit() else None


async def ensure_stream(js: JetStreamContext, params: NatsParams, duplicate_window_ns: int) -> None:
    """Create the stream on ``<subject>.>`` with file storage if it is not there (an existing one is kept)."""
    import nats.js.errors
    from nats.js.api import StorageType, StreamConfig

    try:
        await js.stream_info(params.stream)
        return
    except nats.js.errors.NotFoundError:
        pass
    except Exception as exc:
        raise bus_error(f"cannot read stream {params.stream!r}", exc) from exc
    config = StreamConfig(
        name=params.stream,
        subjects=[f"{params.subject}.>"],
        storage=StorageType.FILE,
        duplicate_window=duplicate_window_ns / 1e9,
        description=description(params),
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError as exc:
        raise BusError(
            f"cannot create JetStream stream {params.stream!r} on '{params.subject}.>': {exc.description}; "
            "another stream may take these subjects already: fix params.subject or params.stream"
        ) from exc
    except Exception as exc:
        raise bus_error(f"cannot create stream {params.stream!r}", exc) from exc


def _covers(pattern: str, subject: str) -> bool:
    """Whether the NATS subject pattern ``pattern`` (``*`` one token, ``>`` the rest) matches ``subject``."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def bus_error(step: str, exc: BaseException) -> BusError:
    """A nats-py error translated: the step, what happened, and what to check."""
    detail = getattr(exc, "description", None) or str(exc) or type(exc).__name__
    return BusError(f"{step}: {type(exc).__name__}: {detail}; check that the NATS server is up with JetStream on")


async def close(nc: Client | None) -> None:
    """Close ``nc`` quietly (teardown must not raise over the error that ended the job)."""
    if nc is None:
        return
    try:
        await nc.close()
    except Exception:
        pass


__all__ = ["NatsParams", "bus_error", "close", "connect", "ensure_stream", "stream_subjects"]
