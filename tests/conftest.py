"""Shared fixtures: the real data in ../shared and the real services on this machine.

Without a service a test skips, except under ``MDP_REQUIRE_SERVICES=1`` (set by ``.ci/run``), where it
fails: CI must never pass by skipping what it was meant to check.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data" / "real"
REQUIRE_SERVICES = os.environ.get("MDP_REQUIRE_SERVICES") == "1"
PG_HOST = os.environ.get("MDP_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MDP_TEST_PG_PORT", "5432"))
NATS_URL = os.environ.get("MDP_TEST_NATS_URL", "nats://127.0.0.1:4222")


def unavailable(what: str) -> None:
    """Skip the test, or fail it under MDP_REQUIRE_SERVICES=1."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (MDP_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real Binance data (../shared/data/real)."""
    if not (SHARED_DATA / "binance_hftbacktest_trades.csv.gz").exists():
        unavailable(f"the shared real data at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A fresh PostgreSQL database on the real server, dropped after the test."""
    if not _port_open(PG_HOST, PG_PORT):
        unavailable(f"PostgreSQL at {PG_HOST}:{PG_PORT}")
    import psycopg

    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=test"
    name = f"mdp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"host={PG_HOST} port={PG_PORT} user=postgres dbname={name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def nats_url() -> str:
    """The real NATS server with JetStream."""
    if not _port_open("127.0.0.1", 4222):
        unavailable("NATS at 127.0.0.1:4222")
    return NATS_URL
