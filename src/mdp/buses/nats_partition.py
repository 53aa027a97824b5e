"""One partition's pull consumer for ``source.nats``: made at a position, pulled into a queue, replaced after a loss.

Each partition read gets its own JetStream consumer (our server, 2.9, takes one filter subject per
consumer) filtered on ``<subject>.p<k>``, starting just after a stream sequence
(``DeliverPolicy.BY_START_SEQUENCE``), and its own task pulling it into the source's queue.

Messages can be lost between server and client: the server cuts a connection that reads too slowly,
and an unacked consumer counts what it sent as delivered. The consumer sequence shows it, as it grows
by one per message delivered: a jump, or a consumer that delivered more than arrived, means a loss,
and the partition gets a new consumer starting after the last message that did arrive. While the
server is away the partition waits and tries again (a warning is logged now and then), so a reader
outlives a NATS restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mdp.buses import nats_client
from mdp.buses.wire import partition_subject

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

#: what the queue between the partition readers and the source's run loop carries
Batch = tuple[int, list["Msg"]] | BaseException
#: seconds after which the server deletes an ephemeral consumer nobody pulls from
INACTIVE_S = 60.0
#: seconds between tries while a partition cannot be read (server away)
RETRY_S = 0.5
#: an idle partition asks its consumer whether messages went missing every this many empty pulls
TAIL_CHECK_EVERY = 4
#: a warning every this many failed tries in a row
RETRY_LOG_EVERY = 20


@dataclass(frozen=True)
class ConsumerSpec:
    """What a partition reader takes from ``source.nats``'s params."""

    stream: str
    subject: str
    durable: str | None
    ack_wait_s: float
    fetch_batch: int
    fetch_wait_s: float


class PartitionReader:
    """The consumer of partition ``k`` and the task body that pulls it (see the module docstring)."""

    def __init__(self, js: JetStreamContext, spec: ConsumerSpec, k: int) -> None:
        self.js = js
        self.spec = spec
        self.k = k
        #: the consumer's name on the server (None before ``start``)
        self.name: str | None = None
        self.sub: Any = None
        #: consumers replaced after messages were lost on the way, or the server was away
        self.reseeks = 0
        #: set when the source's run ends: ``pump`` returns at its next turn
        self.halt = False

    async def start(self, after: int) -> int:
        """Make the consumer, starting after stream sequence ``after``; return where it starts after.

        A durable consumer is replaced: with ``after`` 0 (no position restored) the new one starts after
        the old one's ack floor (what was acked was committed), so a restart without a checkpoint
        neither waits for ``ack_wait`` to see unacked messages again nor reads again what was acked.

        Raises:
            BusError: the consumer cannot be made (server away, stream gone).
        """
        import nats.js.errors
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        s = self.spec
        subject = partition_subject(s.subject, self.k)
        try:
            if s.durable is None:
                name = f"mdp-{uuid.uuid4().hex[:12]}-p{self.k}"
            else:
                name = f"{s.durable}_p{self.k}"
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    if after == 0:
                        info = await self.js.consumer_info(s.stream, name)
                        after = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
                    await self.js.delete_consumer(s.stream, name)
            config = ConsumerConfig(
                name=name,
                durable_name=None if s.durable is None else name,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=after + 1,
                ack_policy=AckPolicy.NONE if s.durable is None else AckPolicy.ALL,
                max_ack_pending=-1,
                ack_wait=s.ack_wait_s,
                filter_subject=subject,
                inactive_threshold=INACTIVE_S if s.durable is None else None,  # a killed reader's goes away
            )
            await self.js.add_consumer(s.stream, config)
            self.name = name
            self.sub = await self.js.pull_subscribe_bind(consumer=name, stream=s.stream)
        except Exception as exc:
            raise nats_client.bus_error(f"cannot create a consumer on {subject!r} of stream {s.stream!r}", exc) from exc
        return after

    async def restart(self, after: int) -> None:
        """Replace the consumer by a new one starting after stream sequence ``after``."""
        await self.close()
        self.reseeks += 1
        await self.start(after)

    async def pump(self, queue: asyncio.Queue[Batch], fetched: int, target: int | None) -> None:
        """Pull into ``queue`` until ``target`` (if given) was fetched or ``halt`` is set; ``fetched`` is the
        stream sequence the consumer starts after. Losses and outages are handled (module docstring)."""
        s = self.spec
        fresh = self.sub is not None  # a consumer made by ``start``: its consumer sequences begin at 1
        #: the consumer sequence of the last message that arrived
        last = 0
        failures = idle = 0
        while not self.halt and (target is None or fetched < target):
            try:
                if not fresh:
                    await self.restart(fetched)
                    fresh, last = True, 0
                try:
                    msgs = await self.sub.fetch(s.fetch_batch, timeout=s.fetch_wait_s)
                except TimeoutError:
                    idle += 1
                    if self.sub.pending_msgs == 0 and idle % TAIL_CHECK_EVERY == 1:
                        info = await self.sub.consumer_info()
                        fresh = info.delivered.consumer_seq <= last  # more sent than arrived: lost
                    continue
                idle = failures = 0
                good = []
                for m in msgs:
                    seq = m.metadata.sequence
                    if seq.consumer != last + 1:
                        break
                    last = seq.consumer
                    good.append(m)
                if good:
                    fetched = max(fetched, good[-1].metadata.sequence.stream)
                    await queue.put((self.k, good))
                fresh = len(good) == len(msgs)  # a jump: the messages between were lost
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is away or restarting: wait, then a new consumer
                failures += 1
                if failures % RETRY_LOG_EVERY == 1:
                    log.warning("partition %d of %r: %s: %s; retrying", self.k, s.stream, type(exc).__name__, exc)
                fresh = False
                await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        """Unsubscribe; an ephemeral consumer is deleted (a durable one stays, with its ack floor)."""
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        name, self.name = self.name, None
        if name is not None and self.spec.durable is None:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.spec.stream, name)


__all__ = ["Batch", "ConsumerSpec", "PartitionReader"]
