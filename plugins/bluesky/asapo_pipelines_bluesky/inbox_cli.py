"""The suggestion inbox of a pipeline file: list, approve, reject (`pipeline suggestions`).

The pipeline file says where each `bluesky.queue` unit keeps its inbox and which queue server it
talks to; this module reads both from it, so the inbox needs nothing but FILE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import UsageError
from asapo_pipelines_bluesky import bridge
from asapo_pipelines_bluesky.inbox import Entry, Inbox, local_time
from asapo_pipelines_bluesky.params import QueueParams

UNIT = "bluesky.queue"


@dataclass
class Bridge:
    """One `bluesky.queue` instance of a pipeline file."""

    instance: str
    params: QueueParams
    inbox_path: Path

    def open(self, *, create: bool = False, read_only: bool = False) -> Inbox:
        return Inbox(self.inbox_path, create=create, read_only=read_only)


def bridges(pipeline_file: Path, unit: str | None = None) -> list[Bridge]:
    """The file's `bluesky.queue` units (only `unit` when given), their inbox beside the file."""
    from asapo_pipelines.worker.launch import load

    pipeline, catalog = load(Path(pipeline_file))
    base = Path(pipeline_file).resolve().parent
    found = []
    for instance, config in pipeline.units.items():
        if config.unit != UNIT or (unit is not None and instance != unit):
            continue
        params = pipeline.params_for(instance, catalog)
        assert isinstance(params, QueueParams)
        found.append(Bridge(instance, params, base / params.inbox))
    if not found:
        what = f"no {UNIT} unit named {unit}" if unit else f"no {UNIT} unit"
        raise UsageError(f"pipeline file {pipeline_file} has {what}, so it has no suggestion inbox")
    return found


def listing(pipeline_file: Path, *, refresh: bool = True) -> tuple[list[Entry], list[str]]:
    """Every suggestion of the file's bridges (their queue states brought up to date when the
    server answers), and one note per server that could not be asked."""
    entries: list[Entry] = []
    notes: list[str] = []
    sharing: dict[Path, list[Bridge]] = {}
    for b in bridges(pipeline_file):
        if b.inbox_path.exists():
            sharing.setdefault(b.inbox_path, []).append(b)
    for same_inbox in sharing.values():  # two bridges may share one inbox: list it once
        # read alone: an inbox archived read-only with its store is still listed
        inbox = same_inbox[0].open(read_only=True)
        try:
            # approved: also what an approve that stopped half-way left (`bridge.recover`)
            followed = (*bridge.FOLLOWED, "approved")
            asked = [(b, _own(b, same_inbox)) for b in same_inbox]
            stale_ones = [
                (b, whose)
                for b, whose in asked
                if refresh and any(e.state in followed for e in inbox.entries(whose))
            ]
            if stale_ones:
                inbox = _refreshed(stale_ones, inbox, notes)
            entries.extend(inbox.entries())
        finally:
            inbox.close()
    return entries, notes


def _own(b: Bridge, same_inbox: list[Bridge]) -> str | None:
    """Whose suggestions `b` asks its queue server about: all of the inbox's when it is the
    inbox's only bridge (also those of a unit since renamed), else its own: each bridge's
    items are on its own server, where another's would look removed."""
    return None if len(same_inbox) == 1 else b.instance


def _refreshed(
    stale_ones: list[tuple[Bridge, str | None]], inbox: Inbox, notes: list[str]
) -> Inbox:
    """The inbox with the queue states of the suggestions of `stale_ones` (a bridge, whose
    suggestions it asks about) brought up to date, each asked of its bridge's queue server,
    which writes them: opened for writing instead of `inbox` (closed then). An inbox that
    cannot be written is listed as it is, with a note saying so; a server that cannot be asked
    too (`stale`), once."""
    from asapo_pipelines_bluesky.inbox import InboxError
    from asapo_pipelines_bluesky.queue import QueueClient, QueueError

    try:
        writable = stale_ones[0][0].open()
    except InboxError as exc:
        notes.append(f"{exc}: the states shown are the inbox's own, not asked of the queue server")
        return inbox
    inbox.close()
    unanswered: set[str] = set()
    for b, whose in stale_ones:
        if b.params.control_address in unanswered:
            continue  # said once, and not waited for twice
        try:
            with QueueClient(b.params) as client:
                bridge.refresh(writable, client, whose)
        except QueueError as exc:
            unanswered.add(b.params.control_address)
            notes.append(stale(writable, b.params, exc))
    return writable


def stale(inbox: Inbox, params: QueueParams, exc: Any) -> str:
    """One line for a listing the server could not bring up to date (`exc`, its QueueError):
    the server is gone, so the states are as it last answered, and since when."""
    from asapo_pipelines_bluesky.queue import QueueUnreachable

    if isinstance(exc, QueueUnreachable):
        why = (
            f"the queue server at {params.control_address} cannot be reached (no answer within "
            f"{params.timeout:g} s)"
        )
    else:  # a refusal or a bad key file: its own sentence names the server
        why = exc.message
    heard = inbox.last_heard(params.control_address)
    if heard is None:
        return f"{why}: it has never answered this inbox, the states shown are the inbox's own"
    return f"{why}: the states shown are as last seen at {local_time(heard)}"


def _locate(pipeline_file: Path, uid: str) -> tuple[Bridge, Inbox]:
    """The bridge whose inbox holds suggestion `uid` (a unique prefix is enough)."""
    from asapo_pipelines_bluesky.inbox import InboxError

    last: InboxError | None = None
    found = bridges(pipeline_file)  # loads the file and the catalog: once
    for b in found:
        if not b.inbox_path.exists():
            continue
        inbox = b.open()
        try:
            entry = inbox.find(uid)
        except InboxError as exc:
            inbox.close()
            last = exc
            continue
        # an inbox two bridges share: the suggestion's own bridge (its queue server)
        own = [o for o in found if o.instance == entry.instance]
        return (own[0] if own and own[0].inbox_path == b.inbox_path else b), inbox
    if last is not None:
        raise last
    raise InboxError(
        f"no suggestion {uid}: the inbox of {pipeline_file} is empty (run the pipeline first)"
    )


def approve(pipeline_file: Path, uid: str, *, by: str, reason: str = "") -> Entry:
    from asapo_pipelines_bluesky.queue import QueueClient, QueueError, QueueUnreachable

    b, inbox = _locate(pipeline_file, uid)
    try:
        # the states as the server has them now, so that the answer to a second approve says
        # what really became of the item; the approve itself checks the server again
        try:
            with QueueClient(b.params) as client:
                bridge.refresh(inbox, client, b.instance)
        except QueueUnreachable as exc:
            # said at once: asking again in the approve would only wait a second timeout
            entry = inbox.find(uid)
            bridge.check_approvable(entry, halted=True)
            raise bridge.not_approved(entry, exc) from None
        except QueueError:
            pass  # a refusal or a bad key file: the approve records it on the suggestion
        return bridge.approve(inbox, b.params, uid, by=by, reason=reason)
    finally:
        inbox.close()


def reject(pipeline_file: Path, uid: str, *, by: str, reason: str) -> Entry:
    b, inbox = _locate(pipeline_file, uid)
    try:
        return bridge.reject(inbox, uid, by=by, reason=reason, params=b.params)
    finally:
        inbox.close()


def decisions(pipeline_file: Path) -> list[dict[str, Any]]:
    """Every decision people made in the file's inboxes (for provenance)."""
    found: list[dict[str, Any]] = []
    for b in bridges(pipeline_file):
        if b.inbox_path.exists():
            inbox = b.open()
            try:
                found.extend({"unit": b.instance, **d} for d in inbox.decisions())
            finally:
                inbox.close()
    return found
