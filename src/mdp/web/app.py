"""The dashboard's Starlette app: pages, the REST API and the live WebSockets, over the job registry.

Routes (``{job}`` is the job name, as in ``mdp stop --job NAME``; * needs the token, see ``mdp.web.auth``):

- ``GET /api/jobs``: the newest run of every job; ``GET /api/jobs/{job}``: one, with its last figures
  (``counters``, the graph under ``counters.graph``) and its checkpoint (each node's watermark);
- ``POST /api/jobs`` *: start a job from ``{"path": FILE}`` or ``{"config": TEXT, "filename": NAME}``,
  optional ``"job"``; ``POST /api/jobs/{job}/stop`` *: what ``mdp stop`` does, without waiting;
- ``GET /api/components``: what ``mdp components --json`` prints;
- ``POST /api/validate``: ``{"path": FILE}`` or ``{"config": TEXT}``: what ``mdp validate`` says;
- ``GET /api/jobs/{job}/bars?symbol=&start=&end=&timeframe=``: bars from the job's store;
- ``WS /ws/jobs/{job}?token=…[&symbols=A,B]`` *: the status on every heartbeat and new bars as written;
- pages ``/`` (jobs), ``/jobs/{job}`` (the DAG and the candles), ``/config`` (validate as you type).

The chart library is the ``plotly`` package's own bundle, served from the installed package at
``/assets/plotly.min.js``: nothing is fetched from the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from mdp.app.jobs import JobStore
from mdp.config.registry import default_registry
from mdp.durations import parse_time
from mdp.errors import ConfigError, MdpError
from mdp.web import configs
from mdp.web.auth import authorized
from mdp.web.feed import JobFeed, bar_rows, bar_store

STATIC = Path(__file__).parent / "static"
#: the most bars one ``/bars`` request returns (the newest ones)
MAX_BARS = 20_000


@dataclass
class Settings:
    """What the app serves from: the registry's folder, the token, and the folders jobs may use."""

    home: Path
    token: str
    roots: Sequence[Path]
    cwd: Path = field(default_factory=Path.cwd)
    allowed_hosts: Sequence[str] = ("127.0.0.1", "localhost", "[::1]", "::1", "testserver")
    poll_interval: float = 0.1


def plotly_js() -> Path:
    """The plotly.js bundle the ``plotly`` wheel ships.

    Raises:
        MdpError: plotly is not installed (it is a dependency of mdp).
    """
    try:
        path = Path(str(importlib.resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        raise MdpError("the dashboard needs the plotly package: pip install plotly") from None
    if not path.is_file():
        raise MdpError(f"the plotly package has no bundle at {path}; reinstall it: pip install --force plotly")
    return path


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refused() -> JSONResponse:
    return _error("this needs the dashboard token: Authorization: Bearer <token>, or ?token=<token>", 401)


class Dashboard:
    """The handlers, sharing the settings, the registry and one live feed per watched job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = JobStore(settings.home / "jobs.sqlite")
        self.feeds: dict[str, JobFeed] = {}

    # -- jobs ---------------------------------------------------------------------------------------

    async def jobs(self, request: Request) -> Response:
        records = await asyncio.to_thread(self.registry.jobs)
        return JSONResponse({"jobs": [_brief(r.to_dict()) for r in records]})

    async def job(self, request: Request) -> Response:
        name = request.path_params["job"]
        try:
            record = await asyncio.to_thread(self.registry.get, name)
        except ConfigError as exc:
            return _error(str(exc), 404)
        data = record.to_dict()
        graph = data["counters"].get("graph") or {}
        for sink in graph.get("stores", []):
            if "dsn" in sink.get("spec", {}):
                sink["spec"]["dsn"] = "(hidden)"
        data["checkpoint"] = {n["id"]: n.get("watermark") for n in graph.get("nodes", [])}
        return JSONResponse(data)

    async def stop(self, request: Request) -> Response:
        if not authorized(request, self.settings.token):
            return _refused()
        name = request.path_params["job"]
        try:
            record = await asyncio.to_thread(self.registry.request_stop, name)
        except ConfigError as exc:
            return _error(str(exc), 404)
        except MdpError as exc:
            return _error(str(exc), 409)
        return JSONResponse({"job": name, "state": record.state, "pid": record.pid})

    async def start(self, request: Request) -> Response:
        if not authorized(request, self.settings.token):
            return _refused()
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            path = await asyncio.to_thread(self._config_file, body)
            job = await asyncio.to_thread(validate_for_start, path, self.settings)
            name = await asyncio.to_thread(
                configs.start_job,
                path,
                self.registry,
                self.settings.home / "logs",
                name=body.get("job") or job,
                cwd=self.settings.cwd,
            )
        except ConfigError as exc:
            return _error(str(exc), 400)
        except MdpError as exc:
            return _error(str(exc), 500)
        record = await asyncio.to_thread(self.registry.get, name)
        return JSONResponse(_brief(record.to_dict()), status_code=201)

    def _config_file(self, body: dict[str, Any]) -> Path:
        """The job file a request names (``path``) or uploads (``config``), inside the allowed folders."""
        if isinstance(body.get("config"), str):
            return configs.save_upload(self.settings.home, str(body.get("filename") or "upload.yaml"), body["config"])
        if isinstance(body.get("path"), str):
            return configs.check_file_allowed(self.settings.cwd / Path(body["path"]).expanduser(), self.settings.roots)
        raise ConfigError('send {"path": "job.yaml"} or {"config": "<the job file>", "filename": "job.yaml"}')

    # -- components, validation, bars ---------------------------------------------------------------

    async def components(self, request: Request) -> Response:
        registry = await asyncio.to_thread(default_registry)
        infos = [entry.describe() for entry in registry]
        return JSONResponse({"components": infos, "plugin_errors": registry.plugin_errors})

    async def validate(self, request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            path = await asyncio.to_thread(self._config_file, body)
        except ConfigError as exc:
            return JSONResponse({"ok": False, "message": str(exc), "graph": None, "job": None})
        result = await asyncio.to_thread(configs.validate, path)
        if isinstance(body.get("config"), str):
            await asyncio.to_thread(_remove_upload, path)
        return JSONResponse(result.to_dict())

    async def bars(self, request: Request) -> Response:
        name = request.path_params["job"]
        q = request.query_params
        try:
            record = await asyncio.to_thread(self.registry.get, name)
            start, end = _time(q.get("start")), _time(q.get("end"))
        except ConfigError as exc:
            return _error(str(exc), 404 if "no job named" in str(exc) else 400)
        store = bar_store(record)
        if store is None:
            return _error(f"job {name!r} writes no bars to a store the dashboard can read", 404)

        def read() -> list[dict[str, Any]]:
            with store:
                frame = store.read("bar", q.get("symbol") or None, q.get("timeframe") or None, start, end)
            return bar_rows(frame.tail(MAX_BARS))

        try:
            rows = await asyncio.to_thread(read)
        except MdpError as exc:
            return _error(f"cannot read the bars of job {name!r}: {exc}", 503)
        symbols = sorted({r["symbol"] for r in rows})
        return JSONResponse({"job": name, "symbols": symbols, "bars": rows})

    # -- live ---------------------------------------------------------------------------------------

    async def live(self, ws: WebSocket) -> None:
        # accepted, then closed with a code the page can show (a refused handshake reaches JS as 1006)
        await ws.accept()
        if not authorized(ws, self.settings.token):
            await ws.close(code=4401, reason="this needs the dashboard token (?token=)")
            return
        name = ws.path_params["job"]
        if await asyncio.to_thread(self.registry.latest, name) is None:
            await ws.close(code=4404, reason=f"no job named {name!r}")
            return
        feed = self.feeds.get(name)
        if feed is None:
            feed = self.feeds[name] = JobFeed(self.registry, name, interval=self.settings.poll_interval)
        symbols = {s for s in ws.query_params.get("symbols", "").split(",") if s}
        sub = feed.subscribe(symbols)

        async def receive() -> None:  # the client may change its symbols: {"symbols": ["A", "B"]}
            while True:
                message = await ws.receive_text()
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    sub.symbols = set(json.loads(message).get("symbols") or [])

        reader = asyncio.create_task(receive())
        try:
            while True:
                getter = asyncio.create_task(sub.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                text = getter.result()
                if text is None:
                    break
                await ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            feed.unsubscribe(sub)
            with contextlib.suppress(Exception):
                await ws.close()

    async def shutdown(self) -> None:
        for feed in self.feeds.values():
            await feed.close()


def validate_for_start(path: Path, settings: Settings) -> str:
    """Check ``path`` as ``mdp validate`` does and fence its paths; return the job's name."""
    job = configs.check_config(path)
    configs.check_paths(job, settings.roots, settings.cwd)
    return job.job


def _time(text: str | None) -> int | None:
    """A query's time: ns since the epoch (digits) or ISO-8601; None when absent."""
    if not text:
        return None
    return int(text) if text.lstrip("-").isdigit() else parse_time(text)


def _remove_upload(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
        path.parent.rmdir()


def _brief(data: dict[str, Any]) -> dict[str, Any]:
    """A job row without its graph (the job page asks for it)."""
    counters = {k: v for k, v in data.get("counters", {}).items() if k != "graph"}
    return {**data, "counters": counters}


async def _json_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error("the request body must be a JSON object", 400)
    if not isinstance(body, dict):
        return _error("the request body must be a JSON object", 400)
    return body


def _page(name: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    return endpoint


def create_app(settings: Settings) -> Starlette:
    """The dashboard app (see the module docstring for its routes)."""
    board = Dashboard(settings)
    bundle = plotly_js()

    async def plotly(request: Request) -> Response:
        return FileResponse(bundle, media_type="text/javascript")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await board.shutdown()

    routes = [
        Route("/", _page("index.html")),
        Route("/jobs/{job}", _page("job.html")),
        Route("/config", _page("config.html")),
        Route("/assets/plotly.min.js", plotly),
        Mount("/static", StaticFiles(directory=STATIC)),
        Route("/api/jobs", board.jobs, methods=["GET"]),
        Route("/api/jobs", board.start, methods=["POST"]),
        Route("/api/jobs/{job}", board.job, methods=["GET"]),
        Route("/api/jobs/{job}/stop", board.stop, methods=["POST"]),
        Route("/api/jobs/{job}/bars", board.bars, methods=["GET"]),
        Route("/api/components", board.components, methods=["GET"]),
        Route("/api/validate", board.validate, methods=["POST"]),
        WebSocketRoute("/ws/jobs/{job}", board.live),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.dashboard = board
    return app
