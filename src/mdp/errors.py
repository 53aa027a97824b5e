"""The errors mdp raises, one root and a child per place things go wrong.

::

    MdpError
    ├── ChannelClosed            get() on a closed, drained channel; put() on a closed channel
    │   └── ChannelBroken        put() after the receiving node has gone away
    ├── DagValidationError       the graph is not a runnable DAG (cycle, unknown node, ...)
    ├── NodeError                a node raised; carries the node's name, chained to the cause
    ├── ConfigError              a config file, key or value is wrong; names the key path
    ├── SourceError              a source cannot read its input (missing file, bad column)
    │   └── InputError           the input broke or is mostly bad; raised after the rows before drained
    ├── BrokerError              a broker (TWS / IB Gateway) cannot be reached or refuses the connection
    ├── StoreError               a store cannot write or read
    │   ├── TransientStoreError  worth retrying (connection refused, server restarting)
    │   └── PermanentStoreError  retrying will not help (bad credentials, schema mismatch)
    └── BusError                 a message bus (NATS JetStream) refused a connection, a publish or a read

Messages are lowercase, name the step, what was expected and what was found, and say what to change.
Library errors (sqlite3, psycopg, polars, nats) are translated into these at the boundary with ``raise ... from``.
"""

from __future__ import annotations


class MdpError(Exception):
    """Root of every error mdp raises on purpose."""


class ChannelClosed(MdpError):
    """The channel is closed: nothing more will arrive (get) or may be sent (put)."""


class ChannelBroken(ChannelClosed):
    """The node reading this channel has finished, so a put can never be delivered."""


class DagValidationError(MdpError):
    """The graph cannot run; the message names the nodes involved and what to change."""


class NodeError(MdpError):
    """A node failed while the graph ran. ``node`` names it; ``__cause__`` is the original error."""

    def __init__(self, node: str, cause: BaseException) -> None:
        self.node = node
        self.cause = cause
        super().__init__(f"node {node!r} failed: {type(cause).__name__}: {cause}")


class ConfigError(MdpError):
    """A configuration is invalid. The message names the key path, the value and what was expected."""


class BrokerError(MdpError):
    """A broker connection cannot be made: the service is down, or its port, host or client id is wrong."""


class SourceError(MdpError):
    """A source cannot produce data (missing file, unknown column, unparsable timestamp)."""


class InputError(SourceError):
    """A source's input is bad beyond single rows: its tail is cut off or corrupt, or too many rows are bad.

    A source raises it from ``run`` *after* it sent every row it could read; the runtime then lets the
    graph drain as at the end of input (so the bars those rows closed are written) and fails the job
    with this error once every node has finished.
    """


class StoreError(MdpError):
    """A store failed to write or read."""


class TransientStoreError(StoreError):
    """A store failure that a retry may fix (connection refused or reset, server restarting)."""


class PermanentStoreError(StoreError):
    """A store failure that a retry will not fix (bad credentials, schema mismatch)."""


class BusError(MdpError):
    """A message bus failed: cannot connect, the stream is missing, a publish was refused or not acked."""
