"""Partition ownership through PostgreSQL advisory locks on the real server: shares, takeover, fencing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from mdp.buses.ownership import OwnershipLost, PartitionOwnership, group_key, owners

pytestmark = pytest.mark.services


@pytest.fixture
def group() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def settle(workers: list[PartitionOwnership], rounds: int = 4) -> None:
    """Rebalance every worker a few rounds, giving back surplus at once (as workers do after a commit)."""
    for _ in range(rounds):
        for w in workers:
            _, surplus = w.rebalance()
            for k in surplus:
                w.release(k)


def test_three_workers_share_twelve_partitions_four_each_and_each_partition_has_one_owner(
    postgres_dsn: str, group: str
) -> None:
    workers = [PartitionOwnership(postgres_dsn, group, 12, worker=f"w{i}") for i in range(3)]
    try:
        for w in workers:
            w.join()
        settle(workers)
        assert [len(w.owned) for w in workers] == [4, 4, 4]
        assert set().union(*(w.owned for w in workers)) == set(range(12))
        with psycopg.connect(postgres_dsn) as conn:
            seen = {o.partition: o.worker for o in owners(conn, group)}
        assert seen == {k: w.worker for w in workers for k in w.owned}
    finally:
        for w in workers:
            w.leave()


def test_a_partition_held_by_one_worker_cannot_be_claimed_by_another(postgres_dsn: str, group: str) -> None:
    a, b = PartitionOwnership(postgres_dsn, group, 4, "a"), PartitionOwnership(postgres_dsn, group, 4, "b")
    try:
        a.join()
        b.join()
        assert a.try_claim(2)
        assert not b.try_claim(2)
        a.release(2)
        assert b.try_claim(2)
    finally:
        a.leave()
        b.leave()


def test_when_a_worker_dies_the_others_take_its_partitions_over(postgres_dsn: str, group: str) -> None:
    """A worker in another process holds partitions; kill -9 frees them and the survivors share all 12."""
    code = (
        "import sys, time\n"
        "from mdp.buses.ownership import PartitionOwnership\n"
        f"w = PartitionOwnership({postgres_dsn!r}, {group!r}, 12, 'doomed')\n"
        "w.join()\n"
        "for k in range(4): w.try_claim(k)\n"
        "print(sorted(w.owned), flush=True)\n"
        "time.sleep(120)\n"
    )
    doomed = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    survivors = [PartitionOwnership(postgres_dsn, group, 12, worker=f"s{i}") for i in range(2)]
    try:
        assert doomed.stdout is not None
        assert doomed.stdout.readline().strip() == "[0, 1, 2, 3]"
        for w in survivors:
            w.join()
        settle(survivors)
        assert survivors[0].members() == 3
        assert set().union(*(w.owned for w in survivors)) == set(range(4, 12))
        doomed.kill()
        doomed.wait()
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # the server notices the dead session
            for _ in range(100):
                if not [o for o in owners(conn, group) if o.worker == "doomed"]:
                    break
                conn.execute("SELECT pg_sleep(0.05)")
        settle(survivors)
        assert survivors[0].members() == 2
        assert sorted(len(w.owned) for w in survivors) == [6, 6]
        assert set().union(*(w.owned for w in survivors)) == set(range(12))
    finally:
        doomed.kill()
        for w in survivors:
            w.leave()


def test_a_new_worker_gets_its_share_once_the_others_give_surplus_back(postgres_dsn: str, group: str) -> None:
    first = PartitionOwnership(postgres_dsn, group, 6, "first")
    later = PartitionOwnership(postgres_dsn, group, 6, "later")
    try:
        first.join()
        first.rebalance()
        assert first.owned == set(range(6))
        later.join()
        gained, _ = later.rebalance()
        assert gained == set()  # all taken
        _, surplus = first.rebalance(releasable={0, 1, 2, 3, 4, 5})
        assert len(surplus) == 3
        for k in surplus:
            first.release(k)
        gained, _ = later.rebalance()
        assert gained == surplus
    finally:
        first.leave()
        later.leave()


def test_a_commit_is_fenced_once_the_lock_session_is_gone(postgres_dsn: str, group: str) -> None:
    w = PartitionOwnership(postgres_dsn, group, 4, "fenced")
    try:
        w.join()
        assert w.try_claim(1)
        with psycopg.connect(postgres_dsn) as store, store.transaction():
            w.fence(store, {1})  # held: passes
            with pytest.raises(OwnershipLost, match=r"partitions \[3\]"):
                w.fence(store, {1, 3})
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (w.pid,))
        other = PartitionOwnership(postgres_dsn, group, 4, "other")
        other.join()
        try:
            # freed by the server once the terminated backend has exited (pg_terminate_backend only signals it)
            deadline = time.monotonic() + 10
            while not other.try_claim(1) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert other.owned == {1}
        finally:
            other.leave()
    finally:
        w.leave()


def test_group_keys_are_signed_int4_and_differ_by_role() -> None:
    keys = [group_key(f"g{i}") for i in range(200)] + [group_key("g", "member")]
    assert all(-(2**31) <= k < 2**31 for k in keys)
    assert group_key("g") != group_key("g", "member")


@pytest.mark.parametrize("negative", [True, False])
def test_owners_are_seen_whatever_the_sign_of_the_group_key(postgres_dsn: str, negative: bool) -> None:
    name = next(g for g in (f"sign-{uuid.uuid4().hex}" for _ in range(1000)) if (group_key(g) < 0) == negative)
    w = PartitionOwnership(postgres_dsn, name, 3, "signed")
    try:
        w.join()
        w.rebalance()
        assert w.members() == 1
        with psycopg.connect(postgres_dsn) as conn:
            assert [o.partition for o in owners(conn, name)] == [0, 1, 2]
            w.fence(conn)
    finally:
        w.leave()
