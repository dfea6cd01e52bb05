"""The viewer's web server: the page, its static files, a JSON API and a Server-Sent Events feed.

One background task polls the transport (in a thread: the transport's calls block) and keeps
each section of the page as serialized JSON; every open page gets the sections that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import json
import math
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.viewer.model import PipelineView

STATIC = Path(__file__).parent / "static"
#: asapo-pipelines is installed from its checkout (it is on no package index): the extra is
#: installed from there too
EXTRA_HINT = (
    "install the viewer's extra from the asapo-pipelines checkout: pip install -e '.[viewer]'"
)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class ViewerError(PipelinesError):
    """The viewer cannot start (bind refused, port taken, a library missing)."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless explicitly allowed: the page has no login."""
    if not allow_remote and not is_loopback(host):
        raise ViewerError(
            f"refusing to serve the viewer on {host}: it has no login, so it listens on a "
            "loopback address unless you pass --allow-remote (or reach it through an SSH tunnel)"
        )


def host_of(header: str) -> str:
    """The host part of a Host header, brackets kept on IPv6 literals (`[::1]:8765` -> `[::1]`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LoopbackHostOnly:
    """Refuses requests naming any host but ours, so a page on another site cannot reach the
    viewer by pointing its own name at 127.0.0.1 (DNS rebinding)."""

    def __init__(self, app: Any, allowed: set[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            host = host_of(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [(b"content-type", b"text/plain")],
                    }
                )
                await send({"type": "http.response.body", "body": b"invalid host header"})
                return
        await self.app(scope, receive, send)


def plotly_js() -> Path:
    """Plotly.js as the installed `plotly` Python package bundles it (nothing is vendored)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ViewerError(f"the viewer needs the plotly package; {EXTRA_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise ViewerError(f"the installed plotly package has no {path.name}; {EXTRA_HINT}")
    return path


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, unknown objects their text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(_clean(value), allow_nan=False, separators=(",", ":"))


class Hub:
    """The latest sections and a condition the event streams wait on."""

    def __init__(
        self, view: PipelineView, transport: Any, poll_interval: float, run_dir: Path | None = None
    ) -> None:
        from asapo_pipelines.viewer.collector import Collector

        self.view = view
        self.collector = Collector(view, transport, run_dir=run_dir)
        self.poll_interval = poll_interval
        self.sections: dict[str, str] = {}
        self.generation = 0
        self.lock = threading.Lock()  # the collector's readers are used from one thread at a time
        self.changed: asyncio.Condition | None = None
        self.error: str | None = None
        self.server: Any = None  # the uvicorn server, once there is one

    def poll_now(self) -> dict[str, str]:
        with self.lock:
            sections = self.collector.poll()
        return {name: dumps(value) for name, value in sections.items()}

    async def run(self) -> None:
        self.changed = asyncio.Condition()
        while True:
            try:
                sections = await asyncio.to_thread(self.poll_now)
                self.error = None
            except Exception as exc:  # the transport may be away for a while: say so, go on
                sections = {"status": dumps({"error": f"{type(exc).__name__}: {exc}"})}
                self.error = str(exc)
            else:
                sections["status"] = dumps({"error": None})
            if sections != {k: self.sections.get(k) for k in sections}:
                async with self.changed:
                    self.sections.update(sections)
                    self.generation += 1
                    self.changed.notify_all()
            await asyncio.sleep(self.poll_interval)

    def stopping(self) -> bool:
        return self.server is not None and bool(self.server.should_exit)

    async def events(self) -> AsyncIterator[str]:
        """The sections that changed, as Server-Sent Events, until the server stops."""
        sent: dict[str, str] = {}
        generation = -1
        quiet_since = asyncio.get_running_loop().time()
        while not self.stopping():
            if generation == self.generation:
                if self.changed is None:  # the poller has not started yet
                    await asyncio.sleep(0.1)
                    continue
                async with self.changed:
                    if generation == self.generation:
                        # wake up now and then: open pages must not hold up a shutdown
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.changed.wait(), timeout=0.5)
                if generation == self.generation:
                    now = asyncio.get_running_loop().time()
                    if now - quiet_since > 15:  # keeps proxies and tunnels from timing out
                        quiet_since = now
                        yield ": keep-alive\n\n"
                    continue
            generation = self.generation
            quiet_since = asyncio.get_running_loop().time()
            for name, data in list(self.sections.items()):
                if sent.get(name) != data:
                    sent[name] = data
                    yield f"event: {name}\ndata: {data}\n\n"


def create_app(
    view: PipelineView,
    transport: Any,
    *,
    poll_interval: float = 1.0,
    trusted_hosts: bool = True,
    host: str = "127.0.0.1",
    run_dir: Path | None = None,
) -> Any:
    """The Starlette application (tests serve it with uvicorn on 127.0.0.1)."""
    try:
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.requests import Request
        from starlette.responses import FileResponse, Response, StreamingResponse
        from starlette.routing import Route
    except ImportError:
        raise ViewerError(f"the viewer needs starlette and uvicorn; {EXTRA_HINT}") from None

    from asapo_pipelines.viewer.graph import render_svg

    plotly = plotly_js()
    hub = Hub(view, transport, poll_interval, run_dir)
    svg = render_svg(view)
    files = {
        "viewer.js": (STATIC / "viewer.js", "text/javascript"),
        "inbox.js": (STATIC / "inbox.js", "text/javascript"),
        "viewer.css": (STATIC / "viewer.css", "text/css"),
        "favicon.svg": (STATIC / "favicon.svg", "image/svg+xml"),
        "plotly.min.js": (plotly, "text/javascript"),
    }
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    def json_response(value: Any, status: int = 200) -> Response:
        return Response(
            dumps(value), status_code=status, media_type="application/json", headers=headers
        )

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=headers)

    async def static(request: Request) -> Response:
        entry = files.get(request.path_params["name"])
        if entry is None:
            return Response("not found", status_code=404, media_type="text/plain")
        cache = {**headers, "Cache-Control": "max-age=3600"}
        return FileResponse(entry[0], media_type=entry[1], headers=cache)

    async def pipeline(_request: Request) -> Response:
        units = [
            {
                "instance": u.instance,
                "unit": u.descriptor.name,
                "kind": u.descriptor.kind,
                "inputs": dict(u.inputs),
                "outputs": dict(u.outputs),
            }
            for u in view.units
        ]
        return json_response(
            {
                "name": view.name,
                "units": units,
                "streams": view.streams,
                "svg": svg,
                "plots": hub.collector.declared_plots(),
            }
        )

    async def messages(request: Request) -> Response:
        stream = request.query_params.get("stream", "")
        try:
            count = max(1, min(100, int(request.query_params.get("n", "10"))))
        except ValueError:
            return json_response({"error": "n must be a number"}, 400)

        def read() -> list[dict[str, Any]]:
            with hub.lock:
                return hub.collector.latest(stream, count)

        try:
            items = await asyncio.to_thread(read)
        except KeyError:
            return json_response({"error": "no such stream in this pipeline"}, 404)
        except PipelinesError as exc:
            # the transport failed (ASAP::O unreachable, a damaged store): say so, the page
            # keeps working and asks again
            return json_response({"error": f"cannot read stream {stream}: {exc.message}"}, 503)
        return json_response({"stream": stream, "messages": items})

    async def events(_request: Request) -> Response:
        return StreamingResponse(
            hub.events(),
            media_type="text/event-stream",
            headers={**headers, "X-Accel-Buffering": "no"},
        )

    # the suggestion inbox (the bluesky plugin's), decisions from this page on loopback only
    from asapo_pipelines.viewer.inbox import InboxApi
    from asapo_pipelines.viewer.inbox import routes as inbox_routes

    inbox_api = InboxApi(view.path, loopback_only=trusted_hosts)
    inbox = inbox_routes(inbox_api, json_response)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with hub.lock:
                hub.collector.close()
            # a listing still waiting for a queue server that does not answer is not waited for
            inbox_api.pool.shutdown(wait=False, cancel_futures=True)

    middleware = []
    if trusted_hosts:
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        allowed = {"localhost", "127.0.0.1", "[::1]", shown.lower()}
        middleware.append(Middleware(LoopbackHostOnly, allowed=allowed))
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/static/{name}", static),
            Route("/api/pipeline", pipeline),
            Route("/api/messages", messages),
            Route("/events", events),
            *inbox,
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket first, so a taken port is one clear sentence."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ViewerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(64)
    return sock


def make_server(app: Any, sock: socket.socket) -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ViewerError(f"the viewer needs uvicorn; {EXTRA_HINT}") from None
    config = uvicorn.Config(
        app, log_level="warning", timeout_graceful_shutdown=5, lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    app.state.hub.server = server  # the event streams end when it is told to exit
    return server


def serve(
    view: PipelineView,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    allow_remote: bool = False,
    poll_interval: float = 1.0,
    run_dir: Path | None = None,
    ready: Any = None,
) -> None:
    """Serve the viewer until interrupted; `ready(url)` is called once it listens."""
    from asapo_pipelines.transport import open_transport

    check_bind(host, allow_remote)
    sock = listen(host, port)
    # read alone (as `status`, `runs`, `tail`): the page only looks, and a store archived on a
    # read-only file system is shown too (a writable opening failed on its write lock)
    transport = open_transport(view.transport, read_only=True)
    try:
        app = create_app(
            view,
            transport,
            poll_interval=poll_interval,
            # a loopback bind keeps the Host check whatever --allow-remote says: only a
            # non-loopback bind has names we cannot know, and DNS rebinding targets loopback
            trusted_hosts=not allow_remote or is_loopback(host),
            host=host,
            run_dir=run_dir,
        )
        server = make_server(app, sock)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{bound}/")
        server.run(sockets=[sock])
    finally:
        transport.close()
        sock.close()
