"""Which worker reads which partition: PostgreSQL session advisory locks, one per partition of a group.

N identical workers of one job (a *group*, e.g. the job name) share the ``P`` partitions of a stream. A
worker owns partition ``k`` while its database session holds the advisory lock ``(group key, k)``
(``pg_try_advisory_lock(int4, int4)``, the group key being ``crc32(group)`` as a signed int4); when the
worker dies, or its connection does, PostgreSQL frees the lock and another worker takes the partition
over. Each worker also holds a *shared* lock on ``(member key, 0)``, so the number of live workers is the
number of sessions holding it, visible to every worker in ``pg_locks`` with no table and no heartbeat.

Rules (:meth:`PartitionOwnership.rebalance`):

- a worker's fair share is ``ceil(P / live workers)``;
- it tries the free partitions, starting at a place that depends on its name so that workers starting
  together do not all race for partition 0, until it owns its share;
- it gives back partitions above its share (highest first), but only those the caller says are safe to
  give (committed): the caller stops reading them first, then calls :meth:`release`.

The lock session is meant to be the connection that commits the worker's bars and positions, so a
worker that lost its locks (its session died) cannot commit either. When the commit runs on another
connection, :meth:`PartitionOwnership.fence` inside the commit transaction checks that the lock session
still holds every partition committed for, and fails the transaction otherwise.
"""

from __future__ import annotations

import math
import os
import socket
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mdp.errors import BusError

if TYPE_CHECKING:
    import psycopg

#: the second key of the members' shared lock
MEMBER_OBJID = 0


class OwnershipLost(BusError):
    """A worker committed for a partition whose lock its session no longer holds."""


def group_key(group: str, role: str = "partition") -> int:
    """The first advisory-lock key of ``group`` (signed int4): partitions, or ``member`` for membership."""
    value = zlib.crc32(f"mdp:{role}:{group}".encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def default_worker_name() -> str:
    """``host:pid``: what ``mdp status`` shows as the owner (the session's ``application_name``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Owner:
    """A partition's owner as the database sees it."""

    partition: int
    worker: str
    pid: int


class PartitionOwnership:
    """Claim and give back partitions of ``group`` through advisory locks held by one session.

    Args:
        dsn: PostgreSQL connection string; a dedicated session is opened (``application_name`` = ``worker``).
        group: the workers sharing partitions (usually the job name and the stream).
        partitions: how many partitions the stream has.
        worker: this worker's name (default ``host:pid``).
    """

    def __init__(self, dsn: str, group: str, partitions: int, worker: str | None = None) -> None:
        if partitions < 1:
            raise BusError(f"a partition group needs at least one partition, got {partitions}")
        self.dsn = dsn
        self.group = group
        self.partitions = partitions
        self.worker = worker or default_worker_name()
        self.key = group_key(group)
        self.member_key = group_key(group, "member")
        self.owned: set[int] = set()
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The session holding the locks (open it with :meth:`join`)."""
        if self._conn is None or self._conn.closed:
            raise OwnershipLost(f"worker {self.worker!r} has no session with the database; call join() first")
        return self._conn

    @property
    def pid(self) -> int:
        """The backend pid of the lock session."""
        return int(self.connection.info.backend_pid)

    def join(self) -> None:
        """Open the lock session and become a member of the group.

        Raises:
            BusError: PostgreSQL cannot be reached.
        """
        import psycopg

        try:
            self._conn = psycopg.connect(self.dsn, autocommit=True, application_name=self.worker[:63])
            self._conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (self.member_key, MEMBER_OBJID))
        except psycopg.Error as exc:
            raise BusError(
                f"worker {self.worker!r} cannot join partition group {self.group!r}: {exc}; check the dsn and that "
                "PostgreSQL is up"
            ) from exc
        self.owned = set()

    def leave(self) -> None:
        """Give every partition back and close the session (the server would free the locks anyway)."""
        conn, self._conn = self._conn, None
        self.owned = set()
        if conn is not None and not conn.closed:
            import psycopg

            try:
                conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass  # the session is gone already, and its locks with it
            finally:
                conn.close()

    def members(self) -> int:
        """How many workers of the group are alive (sessions holding the member lock)."""
        row = self.connection.execute(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND classid::int4 = %s "
            "AND objid::int4 = %s AND objsubid = 2 AND granted",
            (self.member_key, MEMBER_OBJID),
        ).fetchone()
        return max(int(row[0]) if row else 0, 1)

    def fair_share(self) -> int:
        """``ceil(partitions / live workers)``."""
        return math.ceil(self.partitions / self.members())

    def try_claim(self, partition: int) -> bool:
        """Take ``partition`` if no one holds it; True if this worker owns it now."""
        if partition in self.owned:
            return True
        row = self.connection.execute("SELECT pg_try_advisory_lock(%s, %s)", (self.key, partition)).fetchone()
        if row is not None and row[0]:
            self.owned.add(partition)
            return True
        return False

    def release(self, partition: int) -> None:
        """Give ``partition`` back (after its last commit: the next owner resumes from the committed position)."""
        if partition in self.owned:
            self.connection.execute("SELECT pg_advisory_unlock(%s, %s)", (self.key, partition))
            self.owned.discard(partition)

    def rebalance(self, releasable: set[int] | None = None) -> tuple[set[int], set[int]]:
        """Claim free partitions up to the fair share, and list those above it to give back.

        Args:
            releasable: partitions the caller could give back now; None: all owned ones.

        Returns:
            ``(gained, surplus)``: partitions claimed now, and owned partitions above the fair share
            (highest first among ``releasable``) that the caller should stop reading, commit, then
            :meth:`release`.
        """
        share = self.fair_share()
        gained: set[int] = set()
        start = zlib.crc32(self.worker.encode()) % self.partitions
        for i in range(self.partitions):
            if len(self.owned) >= share:
                break
            k = (start + i) % self.partitions
            if k not in self.owned and self.try_claim(k):
                gained.add(k)
        candidates = sorted(self.owned if releasable is None else self.owned & releasable, reverse=True)
        surplus = set(candidates[: max(len(self.owned) - share, 0)])
        return gained, surplus

    def fence(
        self, conn: psycopg.Connection[Any], partitions: set[int] | None = None, *, pid: int | None = None
    ) -> None:
        """Inside a commit transaction on ``conn``: fail unless this worker's lock session still holds ``partitions``.

        ``pid``: the lock session the caller got the partitions from (default: the current one), so a
        pipeline started before the worker joined again cannot commit under the new session's locks.

        Raises:
            OwnershipLost: a partition's lock is not held by this worker's session any more.
        """
        want = sorted(self.owned if partitions is None else partitions)
        if not want:
            return
        rows = conn.execute(
            "SELECT objid::int4 FROM pg_locks WHERE locktype = 'advisory' AND classid::int4 = %s AND objsubid = 2 "
            "AND granted AND pid = %s AND objid::int4 = ANY(%s)",
            (self.key, self.pid if pid is None else pid, want),
        ).fetchall()
        held = {int(r[0]) for r in rows}
        lost = sorted(set(want) - held)
        if lost:
            raise OwnershipLost(
                f"worker {self.worker!r} no longer owns partitions {lost} of group {self.group!r} (its lock session "
                "ended); another worker resumes them from the committed position, so this commit is refused"
            )


def owners(conn: psycopg.Connection[Any], group: str) -> list[Owner]:
    """Who owns which partition of ``group`` now (for ``mdp status``): from ``pg_locks`` and ``pg_stat_activity``."""
    rows = conn.execute(
        "SELECT l.objid::int4, coalesce(a.application_name, ''), l.pid FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid::int4 = %s AND l.objsubid = 2 AND l.granted ORDER BY 1",
        (group_key(group),),
    ).fetchall()
    return [Owner(int(k), str(name), int(pid)) for k, name, pid in rows]


__all__ = ["Owner", "OwnershipLost", "PartitionOwnership", "default_worker_name", "group_key", "owners"]
