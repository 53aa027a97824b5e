"""Every bus passes every check of the bus conformance suite, on the real NATS, Redis and RabbitMQ servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from mdp.testing.bus_conformance import CHECKS, BusUnderTest, delete_stream
from tests.conftest import _port_open, unavailable

pytestmark = pytest.mark.services

PORTS = {"nats": 4222, "redis": 6379, "rabbitmq": 5672}


async def _nats() -> BusUnderTest:
    import nats

    from mdp.buses.nats_sink import NatsSink
    from mdp.buses.nats_source import NatsSource

    stream = f"MDPCONF_{uuid.uuid4().hex[:10]}"

    async def delete() -> None:
        nc = await nats.connect("nats://127.0.0.1:4222")
        try:
            await nc.jetstream().delete_stream(stream)
        except Exception:
            pass
        await nc.close()

    params = {"url": "nats://127.0.0.1:4222", "stream": stream, "subject": f"mdpconf.{stream.lower()}", "partitions": 4}
    return BusUnderTest(
        "nats",
        NatsSink,
        NatsSource,
        params,
        4222,
        lambda port: f"nats://127.0.0.1:{port}",
        delete,
        extra_source={"linger": 0, "fetch_batch": 2, "frame_rows": 600},
        extra_sink={"create_stream": True},
    )


async def _redis() -> BusUnderTest:

    from mdp.buses.redis_sink import RedisSink
    from mdp.buses.redis_source import RedisSource

    stream = f"mdpconf:{uuid.uuid4().hex[:10]}"

    async def delete() -> None:
        await delete_stream("redis", stream, 4)

    params = {"url": "redis://127.0.0.1:6379/0", "stream": stream, "partitions": 4}
    return BusUnderTest(
        "redis",
        RedisSink,
        RedisSource,
        params,
        6379,
        lambda port: f"redis://127.0.0.1:{port}/0",
        delete,
        extra_source={"count": 2},
    )


async def _rabbitmq() -> BusUnderTest:

    from mdp.buses.rabbitmq_sink import RabbitSink
    from mdp.buses.rabbitmq_source import RabbitSource

    stream = f"mdpconf.{uuid.uuid4().hex[:10]}"
    url = "amqp://guest:guest@127.0.0.1:5672/"

    async def delete() -> None:
        await delete_stream("rabbitmq", stream, 4)

    params = {"url": url, "stream": stream, "partitions": 4}
    return BusUnderTest(
        "rabbitmq",
        RabbitSink,
        RabbitSource,
        params,
        5672,
        lambda port: f"amqp://guest:guest@127.0.0.1:{port}/",
        delete,
        extra_source={"max_batch": 2},
    )


MAKERS = {"nats": _nats, "redis": _redis, "rabbitmq": _rabbitmq}


@pytest.fixture(params=list(MAKERS))
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[BusUnderTest]:
    name = str(request.param)
    if not _port_open("127.0.0.1", PORTS[name]):
        unavailable(f"{name} at 127.0.0.1:{PORTS[name]}")
    made = await MAKERS[name]()
    try:
        yield made
    finally:
        await made.delete()


@pytest.mark.parametrize("check", list(CHECKS))
async def test_the_bus_passes_the_check(bus: BusUnderTest, check: str) -> None:
    await CHECKS[check](bus)


@pytest.mark.parametrize("name", ["redis", "rabbitmq"])
async def test_another_partition_count_is_refused_with_the_count_to_set(name: str) -> None:
    from mdp.errors import BusError, NodeError
    from mdp.testing.bus_conformance import make_trades, publish, source, with_watermarks

    if not _port_open("127.0.0.1", PORTS[name]):
        unavailable(f"{name} at 127.0.0.1:{PORTS[name]}")
    made = await MAKERS[name]()
    try:
        await publish(made, with_watermarks(make_trades(1_000), 500))
        for partitions in (3, 5):
            other = BusUnderTest(**{**made.__dict__, "params": {**made.params, "partitions": partitions}})
            with pytest.raises(NodeError) as err:
                await publish(other, with_watermarks(make_trades(100), 100))
            assert isinstance(err.value.__cause__, BusError)
            assert "partitions" in str(err.value)
            src = source(other)
            with pytest.raises(BusError):
                await src.open(None)  # type: ignore[arg-type]
            await src.teardown(None)  # type: ignore[arg-type]
    finally:
        await made.delete()
