"""The queue server, through its own 0MQ client (`bluesky_queueserver_api.zmq.REManagerAPI`).

Every request waits at most `timeout` seconds (the client's own receive timeout); the client's
errors become two of ours with one sentence each: the server refused (its reason, verbatim) or it
did not answer. Nothing here retries: a refused item is refused for a reason a person must see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import PipelinesError
from asapo_pipelines_bluesky.params import QueueParams, key_problem

#: Where a queue item carries the suggestion it came from (queue-server copies `meta` into the
#: run's start document, so the uid also reaches the measured data).
META_KEY = "suggestion"

#: history exit statuses that mean the plan ran to its end
COMPLETED = {"completed"}


class QueueError(PipelinesError):
    """The queue server could not be used (base class)."""


class QueueUnreachable(QueueError):
    """No answer within the deadline: the server is down, or the address is wrong."""


class QueueRefused(QueueError):
    """The server answered and refused the request; `reason` is its own message."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def suggestion_uid(item: dict[str, Any]) -> str | None:
    meta = item.get("meta")
    if isinstance(meta, list):  # queue-server may merge metadata into a list of dicts
        meta = next((m for m in meta if isinstance(m, dict) and META_KEY in m), {})
    found = (meta or {}).get(META_KEY) if isinstance(meta, dict) else None
    uid = found.get("uid") if isinstance(found, dict) else None
    return str(uid) if uid else None


#: The longest server reason kept; a reason is a sentence or a validation report, not a log
REASON_CHARS = 2000


def whole_reason(text: object) -> str:
    """The server's reason, every line of it, as one line: its lines joined with " | " (the
    reason goes to one error record, one inbox field and one table cell), bounded."""
    lines = [" ".join(line.split()) for line in str(text).splitlines()]
    reason = " | ".join(line for line in lines if line).rstrip(".")
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1].rstrip() + "…"
    return reason


def _without_item(msg: str) -> str:
    """A refusal without the item the server prints back after it: plan validation appends
    "\nPlan: {...}" (bluesky-queueserver's profile_ops), our own item, which the inbox keeps."""
    return msg.partition("\nPlan: ")[0]


class QueueClient:
    """One connection to an RE Manager, made from the unit's params."""

    def __init__(self, params: QueueParams) -> None:
        from bluesky_queueserver_api.zmq import REManagerAPI

        self.params = params
        self.address = params.control_address
        key = _public_key(params.public_key)
        try:
            self.api = REManagerAPI(
                zmq_control_addr=params.control_address,
                zmq_public_key=key,
                timeout_recv=params.timeout,
                timeout_send=params.timeout,
            )
        except Exception as exc:  # the client raises what it likes (ValueError, ZMQError, ...)
            raise QueueError(
                f"cannot connect to the queue server at {self.address}: {whole_reason(exc)}"
            ) from None
        self.api.user = params.user
        self.api.user_group = params.user_group

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> QueueClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------
    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        from bluesky_queueserver_api.comm_base import RequestFailedError, RequestTimeoutError

        try:
            return getattr(self.api, method)(**kwargs)
        except RequestTimeoutError:
            raise QueueUnreachable(
                f"the queue server at {self.address} did not answer {what} within "
                f"{self.params.timeout:g} s; is start-re-manager running there?"
            ) from None
        except RequestFailedError as exc:
            msg = exc.response.get("msg", "") if hasattr(exc, "response") else ""
            reason = whole_reason(_without_item(str(msg))) or whole_reason(exc)
            raise QueueRefused(f"the queue server refused {what}: {reason}", reason) from None

    def status(self) -> dict[str, Any]:
        return dict(self._call("a status request", "status", reload=True))

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """Every item the server knows: ("queue" | "running" | "history", item)."""
        queue = self._call("a queue request", "queue_get", reload=True)
        history = self._call("a history request", "history_get", reload=True)
        found: list[tuple[str, dict[str, Any]]] = [("queue", i) for i in queue.get("items", [])]
        running = queue.get("running_item") or {}
        if running:
            found.append(("running", running))
        found.extend(("history", i) for i in history.get("items", []))
        return found

    def states(self) -> dict[str, tuple[str, str, str]]:
        """Suggestion uid -> (state, reason, item uid) for every item carrying one; the latest
        entry wins (a plan re-run by an operator appears twice in the history)."""
        result: dict[str, tuple[str, str, str]] = {}
        for where, item in self.items():
            uid = suggestion_uid(item)
            if uid is None:
                continue  # an operator's own item, or a leftover of something else
            result[uid] = (*_state_of(where, item), str(item.get("item_uid", "")))
        return result

    def submit(self, item: dict[str, Any], uid: str) -> tuple[str, str, str]:
        """Add `item` unless an item with suggestion `uid` is already queued, running or in the
        history; returns (state, reason, item uid) of what the server now holds."""
        existing = self.states().get(uid)
        if existing is not None:
            state, reason, item_uid = existing
            return state, reason or f"already on the queue server (item {item_uid})", item_uid
        answer = self._call("the plan", "item_add", item=item)
        item_uid = str((answer.get("item") or {}).get("item_uid", ""))
        if self.params.start_queue:
            self._start_if_idle()
        return "submitted", "", item_uid

    def _start_if_idle(self) -> None:
        status = self.status()
        if status.get("manager_state") == "idle" and status.get("worker_environment_exists"):
            self._call("queue_start", "queue_start")

    def remove(self, item_uids: list[str]) -> set[str]:
        """Take the items `item_uids` off the plan queue; returns those removed (an item that
        started or was removed meanwhile is not in the queue any more, and is skipped)."""
        if not item_uids:
            return set()
        answer = self._call(
            "a request to remove items", "item_remove_batch", uids=item_uids, ignore_missing=True
        )
        return {str(i.get("item_uid", "")) for i in answer.get("items") or []}

    def plans_allowed(self) -> dict[str, Any]:
        answer = self._call("a plans_allowed request", "plans_allowed", reload=True)
        return dict(answer.get("plans_allowed") or {})


def _state_of(where: str, item: dict[str, Any]) -> tuple[str, str]:
    if where == "queue":
        return "submitted", ""
    if where == "running":
        return "running", ""
    result = item.get("result") or {}
    status = str(result.get("exit_status", ""))
    if status in COMPLETED:
        return "completed", ""
    reason = whole_reason(result.get("msg", "")) or f"the plan ended as {status or 'unknown'}"
    return "failed", reason


def _public_key(value: str | None) -> str | None:
    if not value or not value.startswith("file:"):
        return value or None  # a key given inline was checked with the params
    path = Path(value[5:]).expanduser()
    try:
        key = path.read_text().strip()
    except OSError as exc:
        raise QueueError(
            f"cannot read the queue server's public key from {path}: {exc.strerror}"
        ) from None
    problem = key_problem(key)
    if problem is not None:
        raise QueueError(f"the key in {path} is {problem}")
    return key
