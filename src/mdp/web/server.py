"""``mdp dashboard``: bind, print the URL with the token, serve the app with uvicorn until Ctrl-C."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO

import uvicorn

from mdp.app.jobs import state_dir
from mdp.errors import ConfigError
from mdp.web.app import Settings, create_app
from mdp.web.auth import load_token

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8765
_LOCAL: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be bound (taken, or not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host} port {port}: {exc}; choose another --port or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/?token={token}"


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_dirs: Sequence[Path] = (),
    *,
    home: Path | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Serve the dashboard until interrupted; print its URL (with the token) first.

    Raises:
        ConfigError: an ``--allow-dir`` is not a folder, or the address cannot be bound.
    """
    home = home or state_dir()
    cwd = Path.cwd()
    roots = [cwd, *allow_dirs]
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"--allow-dir {root}: no such folder")
    token = load_token(home)
    local = host in _LOCAL
    if not local:
        print(
            f"warning: --host {host} exposes the dashboard (and, to anyone with the token, job control) "
            "beyond this machine; use it only on a network you trust",
            file=sys.stderr,
        )
    settings = Settings(
        home=home,
        token=token,
        roots=roots,
        cwd=cwd,
        allowed_hosts=(("127.0.0.1", "localhost", "[::1]", "::1") if local else ("*",)),
    )
    app = create_app(settings)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    print(f"mdp dashboard on {url_of(host, actual, token)}", file=out, flush=True)
    print(
        f"jobs from {home / 'jobs.sqlite'}; jobs may use files under {', '.join(map(str, roots))}", file=out, flush=True
    )
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()
