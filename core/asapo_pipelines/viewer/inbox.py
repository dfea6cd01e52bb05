"""The viewer's suggestion inbox: list the queue bridge's suggestions, approve or reject one.

A decision changes the experiment, so the two POST endpoints accept a request only when
- it comes from the page itself: its `Origin` is this server's own origin, and it carries the
  token the page received from `GET /api/inbox` (another site's page can send a request but can
  read neither our answers nor the token, and a custom header makes the browser ask first);
- it comes from this machine (a loopback client), unless the viewer runs with --allow-remote.

The inbox itself (and submitting to the queue server) is the bluesky plugin's; without it, or
without a `bluesky.queue` unit in the file, the page shows no inbox.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import importlib
import ipaddress
import secrets
from pathlib import Path
from typing import Any

from asapo_pipelines.errors import PipelinesError

PLUGIN = "asapo_pipelines_bluesky.inbox_cli"
TOKEN_HEADER = "x-inbox-token"
#: tokens handed out and still accepted (one per page load; the oldest forgotten first)
MAX_TOKENS = 256
#: a reject without a reason, in the page's words
REASON_MISSING = "give a reason for rejecting"
#: threads of the inbox's own: one for the listing, one for a decision meanwhile
INBOX_THREADS = 2


def _plugin() -> Any | None:
    try:
        return importlib.import_module(PLUGIN)
    except ModuleNotFoundError:
        return None


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class InboxApi:
    """The state behind the inbox endpoints: the pipeline file and the tokens handed out."""

    def __init__(self, pipeline_file: Path | None, *, loopback_only: bool) -> None:
        self.file = pipeline_file
        self.loopback_only = loopback_only
        self.tokens: collections.OrderedDict[str, None] = collections.OrderedDict()
        # the inbox asks the queue server, which may take its whole timeout to not answer:
        # its calls run on threads of their own, never on those that read the pipeline's
        # transport for the page (the graph, the counters, the messages)
        self.pool = concurrent.futures.ThreadPoolExecutor(
            INBOX_THREADS, thread_name_prefix="viewer-inbox"
        )
        self._listing: asyncio.Future[dict[str, Any]] | None = None

    async def run(self, call: Any, *args: Any) -> Any:
        """`call(*args)` on the inbox's threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, call, *args)

    async def current(self) -> dict[str, Any]:
        """The listing with a token of this request's own. Requests that come while one
        listing is under way share it: every open page asks every few seconds, and a queue
        server that does not answer would otherwise be asked once per page, each time."""
        if self._listing is None or self._listing.done():
            self._listing = asyncio.ensure_future(self.run(self.listing))
        listed = await asyncio.shield(self._listing)
        return {**listed, "token": self.issue()} if listed.get("available") else listed

    def available(self) -> bool:
        plugin = _plugin()
        if plugin is None or self.file is None:
            return False
        try:
            return bool(plugin.bridges(self.file))
        except Exception:
            return False

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = None
        while len(self.tokens) > MAX_TOKENS:
            self.tokens.popitem(last=False)
        return token

    def refusal(self, request: Any) -> str | None:
        """Why a decision request must be refused, or None."""
        client = request.client.host if request.client else None
        if self.loopback_only and not _is_loopback(client):
            return "decisions are accepted from this machine only (see --allow-remote)"
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin is None or origin.lower() != own.lower():
            return "decisions are accepted from the viewer's own page only"
        if request.headers.get(TOKEN_HEADER) not in self.tokens:
            return "the page's token is missing or unknown; reload the page"
        return None

    def listing(self) -> dict[str, Any]:
        plugin = _plugin()
        if plugin is None or self.file is None or not self.available():
            return {"available": False}
        entries, notes = plugin.listing(self.file)
        return {
            "available": True,
            "notes": notes,
            "suggestions": [e.to_json() for e in entries],
        }

    def knows(self, uid: str) -> bool:
        """Whether a suggestion's id (or a prefix of one, as the inbox takes it) is in the
        inbox: an unknown one is not found (404), not a refused decision (409)."""
        plugin = _plugin()
        if plugin is None or self.file is None:
            return False
        try:
            entries, _notes = plugin.listing(self.file, refresh=False)
        except PipelinesError:  # the inbox cannot be read: the decision itself will say why
            return True
        return any(e.uid == uid or e.uid.startswith(uid) for e in entries)

    def decide(self, action: str, uid: str, reason: str) -> dict[str, Any]:
        plugin = _plugin()
        if plugin is None or self.file is None:
            raise PipelinesError("this pipeline has no suggestion inbox")
        by = f"{plugin.bridge.person()} (viewer)"
        if action == "approve":
            entry = plugin.approve(self.file, uid, by=by, reason=reason)
        else:
            entry = plugin.reject(self.file, uid, by=by, reason=reason)
        return {"suggestion": entry.to_json()}


def routes(api: InboxApi, json_response: Any) -> list[Any]:
    """`GET /api/inbox`, `POST /api/inbox/{uid}/approve` and `.../reject`."""
    from starlette.requests import Request
    from starlette.routing import Route

    async def listing(_request: Request) -> Any:
        try:
            return json_response(await api.current())
        except PipelinesError as exc:
            return json_response({"available": True, "error": exc.message}, 500)

    async def decide(request: Request) -> Any:
        refused = api.refusal(request)
        if refused is not None:
            return json_response({"error": refused}, 403)
        if not api.available():
            return json_response({"error": "this pipeline has no suggestion inbox"}, 404)
        try:
            body = await request.json()
        except ValueError:
            body = {}
        reason = str(body.get("reason", "")) if isinstance(body, dict) else ""
        action = request.path_params["action"]
        if action not in ("approve", "reject"):
            return json_response({"error": "the decisions are approve and reject"}, 404)
        uid = request.path_params["uid"]
        if not await api.run(api.knows, uid):
            return json_response({"error": f"no suggestion {uid} in this pipeline's inbox"}, 404)
        if action == "reject" and not reason.strip():
            # the plugin's sentence names the CLI's --reason option; the page has a text field
            return json_response({"error": REASON_MISSING}, 400)
        try:
            result = await api.run(api.decide, action, uid, reason)
        except PipelinesError as exc:
            return json_response({"error": exc.message}, 409)
        return json_response(result)

    return [
        Route("/api/inbox", listing),
        Route("/api/inbox/{uid}/{action:str}", decide, methods=["POST"]),
    ]
