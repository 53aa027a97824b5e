"""The dashboard's token: made once, kept in ``$MDP_HOME`` readable by its owner only, checked on every change.

Everything that changes state (stop, start, upload) and every WebSocket needs it, as
``Authorization: Bearer <token>`` or, where a browser cannot set that header (a WebSocket, the first page
load), as ``?token=<token>`` in the URL that ``mdp dashboard`` prints at start, as Jupyter does. Reads
(job list, bars, components, validation) need no token: the server listens on this machine only unless
``--host`` says otherwise, and it sends no CORS headers, so another site's page cannot read its answers.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from starlette.requests import HTTPConnection

from mdp.errors import MdpError

TOKEN_FILE: Final = "dashboard.token"


def load_token(home: Path) -> str:
    """The token in ``home/dashboard.token``, made (owner-only, 0600) if missing; tightened if too open.

    Raises:
        MdpError: the file cannot be written or read (the message names it).
    """
    path = home / TOKEN_FILE
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
        token = path.read_text().strip()
    except OSError as exc:
        raise MdpError(f"cannot keep the dashboard token at {path}: {exc}; set MDP_HOME to a writable folder") from exc
    if len(token) < 16:
        raise MdpError(f"the dashboard token in {path} is too short; delete the file and a new one is made")
    return token


def presented_token(conn: HTTPConnection) -> str | None:
    """The token a request or WebSocket carries: the Bearer header first, else ``?token=``."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return conn.query_params.get("token")


def authorized(conn: HTTPConnection, token: str) -> bool:
    """True if ``conn`` carries ``token`` (compared in constant time)."""
    given = presented_token(conn)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
