"""``mdp validate --connect``: reach every store a job reads or writes, before running it.

The plain ``mdp validate`` checks what needs no server: components, params, edges, and (by each
component's ``preflight``) that input files exist and hold the mapped columns. ``--connect`` also opens
every store a node holds, the way the run would reach it, without writing anything:

* PostgreSQL: a read-only session with the node's DSN (host, port, credentials, database), and one
  query of each of its tables that exists;
* SQLite and DuckDB: an existing file is opened read-only and each of the job's tables queried once (it
  must be a database of that kind; a DuckDB file held by a running job is
  reported); for a file not yet made, its folder must be writable;
* Parquet: the folder, or the nearest existing parent of it, must be a writable folder;
* ArcticDB: the library is opened read-only and each table read once; an ``lmdb://`` folder not yet
  made is checked as a Parquet folder is (S3 is reached as ArcticDB reaches it);
* a broker source (``source.ibkr``): its ``check_connection()`` connects read-only and disconnects.

Each failure names the node and the reason; all of them are reported, not only the first.
"""

from __future__ import annotations

import os
from pathlib import Path

from mdp.errors import MdpError
from mdp.runtime.graph import Dag
from mdp.stores.base import Store

#: a symbol no market uses: the probe read touches the store's key index and returns nothing
_PROBE_SYMBOL = "\x00mdp-connect-probe"


def connect_problems(dag: Dag, specs: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """Open every store of ``dag`` read-only; return one line per node that cannot reach its store."""
    problems: list[str] = []
    for node in dag.nodes:
        probe = getattr(node.operator, "check_connection", None)
        if callable(probe):
            try:
                probe()
            except MdpError as exc:
                type_id, where = (specs or {}).get(node.name, (type(node.fn).__name__, ""))
                at = f" at {where}" if where else ""
                problems.append(f"node {node.name!r} ({type_id}{at}): {exc}")
        store = getattr(node.operator, "store", None)
        if not isinstance(store, Store):
            continue
        try:
            check_store(store)
        except (MdpError, OSError) as exc:
            type_id, where = (specs or {}).get(node.name, (type(node.fn).__name__, ""))
            at = f" at {where}" if where else ""
            problems.append(f"node {node.name!r} ({type_id}{at}) cannot reach {store.location}: {exc}")
    return problems


def check_store(store: Store) -> None:
    """Reach ``store`` without writing: connect read-only, or check that its folder can be written.

    Raises:
        MdpError or OSError: why it cannot be reached.
    """
    from mdp.stores.parquet import ParquetStore
    from mdp.stores.postgres import PostgresStore

    if isinstance(store, ParquetStore):
        _check_writable_folder(store.root, make=True)
        return
    if store.backend == "arcticdb":
        from mdp.stores.arcticdb import lmdb_folder

        folder = lmdb_folder(store.spec()["uri"])
        if folder is not None and not folder.exists():  # the run makes it (ArcticDB would make it on opening)
            _check_writable_folder(folder.parent, make=True)
            return
    path = getattr(store, "path", None)
    if not isinstance(store, PostgresStore) and isinstance(path, str):
        if path == ":memory:":
            return
        if not Path(path).exists():  # the run makes it: its folder must take a new file
            _check_writable_folder(Path(path).parent, make=True)
            return
        if Path(path).is_dir():
            raise MdpError(f"{path!r} is a folder, not a database file")
    clone = type(store)(**{**store.spec(), "read_only": True})
    with clone:
        for kind in clone.tables:  # one query per table; the key's leading symbol matches no row
            clone.read(kind, symbol=_PROBE_SYMBOL)


def _check_writable_folder(folder: Path, *, make: bool) -> None:
    """``folder`` is a writable folder, or (``make``) its nearest existing parent is one."""
    here = folder
    while not here.exists() and make and here != here.parent:
        here = here.parent
    if not here.is_dir():
        raise MdpError(f"{str(here)!r} is not a folder")
    if not os.access(here, os.W_OK | os.X_OK):
        raise MdpError(f"folder {str(here)!r} is not writable by this user")
