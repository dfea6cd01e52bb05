"""What the bridge does with a suggestion, shared by the worker, the CLI and the viewer.

- `entry_from_body`: a suggestion message as the inbox keeps it (the agent's own plan item, or
  one built from the unit's `plan` template when the suggestion carries none);
- `over_budget`: why an auto-mode suggestion must wait for a person, if it must;
- `submit`: add its item to the queue (once: the server's queue and history are checked for the
  suggestion's uid first) and record what happened;
- `refresh`: follow submitted items through the queue to completed or failed, and `recover`
  an approve that stopped half-way;
- `cancel`: take the still-queued items of earlier suggestions that a later one (a stop) says
  are not needed off the queue: only the bridge's own items, never the running one;
- `approve` / `reject`: a person's decision, recorded with when, who and why.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from asapo_pipelines.sdk import PipelinesError
from asapo_pipelines_bluesky.inbox import (
    APPROVABLE,
    REJECTABLE,
    Entry,
    Inbox,
    InboxError,
    local_time,
    now,
)
from asapo_pipelines_bluesky.params import Budget, PlanTemplate, QueueParams


class SuggestionError(PipelinesError):
    """A suggestion message the bridge cannot use (not an object, a template that does not fit)."""


def target_label(target: Any) -> str:
    if isinstance(target, dict):
        return "/".join(str(v) for v in target.values() if v not in (None, "")) or "unknown"
    return str(target or "unknown")


#: Fields an entry keeps (and lists) itself: not repeated among its numbers
OWN_FIELDS = {"scans", "confidence", "target"}


def _numbers(arguments: dict[str, Any]) -> dict[str, Any]:
    """The numbers behind a suggestion, for people: scalars of `arguments` and its `metrics`."""
    found: dict[str, Any] = {}
    for source in (arguments, arguments.get("metrics") or {}):
        if not isinstance(source, dict):
            continue
        for key, value in source.items():
            if isinstance(value, bool) or value is None or key in OWN_FIELDS:
                continue
            if isinstance(value, int | float | str) and len(str(value)) <= 40:
                found[str(key)] = value
    return found


_SINGLE = re.compile(r"^\{(\w+)\}$")


def fill_template(template: PlanTemplate, context: dict[str, Any]) -> dict[str, Any]:
    """The queue item the template gives for one suggestion."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            single = _SINGLE.match(value)
            if single and single.group(1) in context:
                return context[single.group(1)]
            try:
                return value.format_map(context)
            except (KeyError, IndexError, ValueError) as exc:
                raise SuggestionError(
                    f"the plan template value {value!r} names {exc} which this suggestion "
                    f"does not have (it has {', '.join(sorted(context))})"
                ) from None
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return {
        "name": template.name,
        "args": fill(list(template.args)),
        "kwargs": fill(dict(template.kwargs)),
        "item_type": "plan",
    }


def entry_from_body(body: Any, *, instance: str, params: QueueParams, run: str = "") -> Entry:
    """A suggestion message body (the SDK's `Suggestion`, or an agent's plain dict with `item`
    in place of `plan`) as an inbox entry, state not yet decided."""
    if not isinstance(body, dict):
        raise SuggestionError(
            f"a suggestion must be a JSON object, this message holds a {type(body).__name__}"
        )
    action = str(body.get("action") or "more_scans")
    arguments = body.get("arguments") if isinstance(body.get("arguments"), dict) else {}
    # a suggestion without uid (a hand-written one) is named by its content, so that the same
    # message delivered twice is still one suggestion
    uid = (
        str(body.get("uid") or "")
        or hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:32]
    )
    target = target_label(body.get("target"))
    plan = body.get("plan") or body.get("item")
    scans = arguments.get("scans")
    if scans is None and isinstance(plan, dict):
        scans = (plan.get("kwargs") or {}).get("repeats")
    # `scans: 0` says "what is needed is in flight already": nothing to queue, template or not
    waiting = arguments.get("scans") == 0
    scans = int(scans) if isinstance(scans, int | float) and not isinstance(scans, bool) else 0
    agent = str(body.get("agent") or "")
    if not plan and action == "more_scans" and params.plan is not None and not waiting:
        plan = fill_template(
            params.plan,
            {
                "target": target,
                "scans": scans or 1,
                "action": action,
                "uid": uid,
                "agent": agent,
                "group": arguments.get("group") or {},
                "arguments": arguments,
            },
        )
    item = None
    if isinstance(plan, dict) and plan.get("name"):
        item = {k: v for k, v in plan.items() if k in ("name", "args", "kwargs", "meta")}
        item.setdefault("args", [])
        item.setdefault("kwargs", {})
        item["item_type"] = "plan"
        meta = dict(item.get("meta") or {})
        # the uid is how the bridge recognises its item on the server, also after a restart
        meta["suggestion"] = {
            "uid": uid,
            "agent": agent,
            "action": action,
            "target": target,
            "reason": str(body.get("reason", "")),
            "confidence": body.get("confidence"),
            "instance": instance,
        }
        item["meta"] = meta
        scans = scans or 1
    confidence = body.get("confidence")
    return Entry(
        uid=uid,
        instance=instance,
        run=run,
        received=now(),
        agent=agent,
        action=action,
        target=target,
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        reason=str(body.get("reason", "")),
        scans=scans if item is not None else 0,
        numbers=_numbers(arguments),
        item=item,
        state="pending" if item is not None else "noted",
        state_reason="" if item is not None else f"{action}: nothing to queue",
    )


def over_budget(inbox: Inbox, entry: Entry, budget: Budget) -> str | None:
    """Why `entry` would exceed the budget, or None. Only the scans of `entry`'s own bridge
    count: a bridge sharing the inbox with another asks a different server."""
    if budget.repeats_per_sample is not None:
        used = inbox.scans_counted(entry.instance, target=entry.target)
        if used + entry.scans > budget.repeats_per_sample:
            return (
                f"over budget: {plural(used, 'scan')} of {entry.target} already queued, "
                f"{entry.scans} more "
                f"would exceed repeats_per_sample {budget.repeats_per_sample}"
            )
    if budget.scans_per_run is not None:
        # this run's: an earlier run's scans (before `pipeline run --fresh`) are its own
        used = inbox.scans_counted(entry.instance, run=entry.run)
        if used + entry.scans > budget.scans_per_run:
            run = f" in run {entry.run}" if entry.run else ""
            return (
                f"over budget: {plural(used, 'scan')} already queued{run}, {entry.scans} more "
                f"would exceed scans_per_run {budget.scans_per_run}"
            )
    if budget.window_scans is not None:
        since = (datetime.now(UTC) - timedelta(minutes=budget.window_minutes)).isoformat()
        used = inbox.scans_counted(entry.instance, since=since)
        if used + entry.scans > budget.window_scans:
            return (
                f"over budget: {plural(used, 'scan')} queued in the last "
                f"{budget.window_minutes:g} min, "
                f"{entry.scans} more would exceed window_scans {budget.window_scans}"
            )
    return None


@contextlib.contextmanager
def failed_on_queue_error(inbox: Inbox, uid: str) -> Iterator[None]:
    """A QueueError inside marks suggestion `uid` failed with its sentence, and goes on (the
    worker sends it to the error stream, the CLI prints it; only a person's approve tries
    again)."""
    from asapo_pipelines_bluesky.queue import QueueError

    try:
        yield
    except QueueError as exc:
        inbox.set_state(uid, "failed", exc.message)
        raise


def connect(inbox: Inbox, params: QueueParams, entry: Entry) -> Any:
    """A client for submitting `entry`; one that cannot be made (a bad key file) fails it."""
    from asapo_pipelines_bluesky.queue import QueueClient

    with failed_on_queue_error(inbox, entry.uid):
        return QueueClient(params)


def submit(inbox: Inbox, client: Any, entry: Entry) -> Entry:
    """Queue `entry`'s item once; a refusal or no answer is recorded as failed and re-raised."""
    assert entry.item is not None
    with failed_on_queue_error(inbox, entry.uid):
        state, reason, item_uid = client.submit(entry.item, entry.uid)
    inbox.heard_from(client.address)
    return inbox.set_state(entry.uid, state, reason, item_uid=item_uid)


def ask(inbox: Inbox, client: Any) -> dict[str, tuple[str, str, str]]:
    """The server's state of each suggestion it holds; its answer is noted in the inbox (a
    listing made while the server is gone says since when its states are as last seen)."""
    states: dict[str, tuple[str, str, str]] = client.states()
    inbox.heard_from(client.address)
    return states


#: states whose item the bridge follows on the server
FOLLOWED = ("submitted", "running")


def refresh(inbox: Inbox, client: Any, instance: str | None = None) -> int:
    """Bring submitted and running entries up to the server's state, and approved ones whose
    approve stopped half-way (`recover`); returns changes made."""
    entries = inbox.entries(instance)
    open_ = [e for e in entries if e.state in FOLLOWED]
    halted = any(e.state == "approved" for e in entries)
    if not open_ and not halted:
        return 0
    # an approve under way holds the decision lock: its `approved` is not one that stopped,
    # and the server is asked after the lock is taken, so it answers for the same moment
    lock = inbox.deciding(wait=False) if halted else contextlib.nullcontext(False)
    with lock as alone:
        states = ask(inbox, client)
        changed = len(recover(inbox, states, instance)) if alone else 0
    missing = [e for e in open_ if e.uid not in states]
    if missing:
        # asked once more before saying an item is gone. The server answers its queue (with
        # the running item) before its history, each at one moment, and an item only moves
        # forward (queue, running, history): one that ran between the two questions is in the
        # history's answer already. The second ask covers a server that moves it in steps
        # (it costs a question only when something seems gone)
        states = {**ask(inbox, client), **states}
    for entry in open_:
        found = states.get(entry.uid)
        if found is None:
            changed += gone(inbox, entry)
            continue
        state, reason, item_uid = found
        if state != entry.state:
            inbox.set_state(entry.uid, state, reason, item_uid=item_uid)
            changed += 1
    return changed


#: how the reason of a suggestion whose item an operator took off the queue begins
REMOVED = "removed from the queue without running"


def gone(inbox: Inbox, entry: Entry) -> int:
    """`entry`'s item is on the server no more (not queued, not running, not in the history):
    an operator removed it from the queue (`qserver queue item remove`, or cleared the queue).
    Its scans will not come, so it becomes `failed` (the agent stops counting them, budgets
    too), saying so; unless it moved meanwhile (a stop cancelled it, a person approved it
    again): returns 1 when it changed."""
    item = f"its item {entry.item_uid}" if entry.item_uid else "its item"
    if entry.state == "submitted":
        reason = (
            f"{REMOVED}: {item} is neither queued, running nor in the queue server's history; "
            "approve it again to queue it anew"
        )
    else:  # running when last seen, and not in the history: nothing says how it ended
        reason = (
            f"{item} left the queue server while running and is not in its history; "
            "approve it again to queue it anew"
        )
    moved = inbox.set_state(entry.uid, "failed", reason, if_still=(entry.state, entry.item_uid))
    return int(moved.state == "failed" and moved.state_reason == reason)


def recover(
    inbox: Inbox, states: dict[str, tuple[str, str, str]], instance: str | None = None
) -> list[Entry]:
    """Approved suggestions (of `instance`) whose approve stopped half-way (killed or
    interrupted after recording `approved`, before recording the server's answer), moved to
    what the server holds (`states`, asked under the lock): the item's state when it has the
    item, else `failed`, saying to approve again (which asks the server first, so nothing is
    queued twice). Call only while holding `inbox.deciding()`."""
    moved = []
    for entry in inbox.entries(instance):
        if entry.state != "approved":
            continue
        found = states.get(entry.uid)
        if found is not None:
            state, reason, item_uid = found
            moved.append(inbox.set_state(entry.uid, state, reason, item_uid=item_uid))
        else:
            moved.append(inbox.set_state(entry.uid, "failed", never_queued(entry)))
    return moved


def never_queued(entry: Entry) -> str:
    """The reason of an approved suggestion whose approve stopped before the server took it."""
    approves = [d for d in entry.decisions if d["decision"] == "approve"]
    by = f" by {approves[-1]['by']}" if approves else ""
    return (
        f"approved{by} at {local_time(entry.updated)}, but the approve stopped before the item "
        "was queued (the queue server has no item for it); approve it again to queue it"
    )


def cancel_list(body: Any) -> list[str]:
    """The uids of earlier suggestions a suggestion says are not needed any more
    (`arguments.cancel_suggestions`, as xas.convergence-agent's stop carries them)."""
    arguments = body.get("arguments") if isinstance(body, dict) else None
    uids = arguments.get("cancel_suggestions") if isinstance(arguments, dict) else None
    if uids is None:
        return []
    if not isinstance(uids, list) or not all(isinstance(u, str) and u for u in uids):
        raise SuggestionError(
            "arguments.cancel_suggestions must be a list of suggestion uids (strings), this "
            f"suggestion has {json.dumps(uids, default=str)[:80]}"
        )
    return list(dict.fromkeys(uids))


def _own(item: dict[str, Any], entry: Entry | None, instance: str, user: str) -> bool:
    """Whether queue item `item` is provably the one this bridge queued for `entry`: its meta
    names this bridge, it was added as the bridge's user, and its item uid is the one the
    server gave the bridge (an item copied, edited or added by someone else has another)."""
    from asapo_pipelines_bluesky.queue import META_KEY

    meta = item.get("meta")
    own_meta = meta.get(META_KEY) if isinstance(meta, dict) else None
    return (
        entry is not None
        and entry.instance == instance
        and entry.item is not None
        and bool(entry.item_uid)
        and entry.item_uid == str(item.get("item_uid", ""))
        and isinstance(own_meta, dict)
        and own_meta.get("instance") == instance
        and item.get("user") == user
    )


def _why_not_queued(entry: Entry | None, instance: str, where: set[str]) -> str:
    """Why a cancelled suggestion has no item of the bridge's left on the plan queue."""
    if "queue" in where:
        return "queued, but not as the bridge queued it (edited or added by hand): left there"
    if "running" in where:
        return "running"
    if "history" in where:
        return "already done"
    if entry is None or entry.instance != instance:
        return "unknown to this bridge"
    if entry.state in ("submitted", "running") or (
        entry.state == "failed" and entry.state_reason.startswith(REMOVED)
    ):
        return "removed by hand"  # noticed already by the refresh before the cancel, or not
    if entry.state == "rejected":
        return "rejected already"  # by a person, or by an earlier stop that named it too
    return f"never queued ({entry.state})"


def _waiting(entry: Entry | None, instance: str) -> bool:
    """Whether `entry` is this bridge's and waits for a person (pending, held): not queued."""
    return entry is not None and entry.instance == instance and entry.state in ("pending", "held")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cancel(inbox: Inbox, client: Any, stop: Entry, uids: list[str], *, params: QueueParams) -> str:
    """Take the still-queued items of suggestions `uids` off the plan queue (only items this
    bridge provably queued; never the running one), or in approve mode only say which; the
    suggestions removed become `rejected` (the agent counts them as not coming). Returns the
    one line that says what was done and what stayed."""
    from asapo_pipelines_bluesky.queue import suggestion_uid

    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for where, item in client.items():
        uid = suggestion_uid(item)
        if uid in uids:
            found.setdefault(uid, []).append((where, item))
    inbox.heard_from(client.address)
    ours: dict[str, str] = {}
    stayed: list[tuple[str, str]] = []
    withdrawn: list[str] = []
    for uid in uids:
        entry = inbox.get(uid)
        items = found.get(uid, [])
        if not items and _waiting(entry, stop.instance):
            # never queued, and a person must not queue it later: what the agent says is
            # not needed is withdrawn in either mode (the queue is not touched)
            inbox.set_state(
                uid,
                "rejected",
                f"cancelled by {stop.action} {stop.uid[:12]}: not needed, never queued",
            )
            withdrawn.append(uid)
            continue
        queued = [i for w, i in items if w == "queue"]
        own = [i for i in queued if _own(i, entry, stop.instance, params.user)]
        if own:
            ours[uid] = str(own[0]["item_uid"])
        if not own or len(queued) > len(own):
            # also an item with its uid that someone else queued (a copy) is named, and stays
            where = {w for w, i in items if not any(i is o for o in own)}
            stayed.append((uid, _why_not_queued(entry, stop.instance, where)))
    head = f"cancel {plural(len(uids), 'earlier suggestion')}: "
    if params.mode != "auto":
        would = ", ".join(f"suggestion {uid[:12]}: item {item}" for uid, item in ours.items())
        done = (
            f"mode approve, so the queue is left as it is; it would remove "
            f"{plural(len(ours), 'queued item')} ({would}); remove "
            f"{'it' if len(ours) == 1 else 'each'} with `qserver queue item remove '<item uid>'`"
            if ours
            else "mode approve; no queued item of the bridge's to remove"
        )
    else:
        removed = client.remove(list(ours.values()))
        taken = [uid for uid, item in ours.items() if item in removed]
        stayed += [(uid, "left the queue meanwhile") for uid in ours if uid not in taken]
        for uid in taken:
            inbox.set_state(
                uid,
                "rejected",
                f"cancelled by {stop.action} {stop.uid[:12]}: not needed, removed from the queue",
            )
        done = f"removed {plural(len(taken), 'queued item')}" + (
            f" ({', '.join(u[:12] for u in taken)})" if taken else ""
        )
    if withdrawn:
        done += (
            f"; withdrew {plural(len(withdrawn), 'suggestion')} never queued ("
            + ", ".join(u[:12] for u in withdrawn)
            + ")"
        )
    if stayed:
        done += "; stayed: " + ", ".join(f"{uid[:12]} {why}" for uid, why in stayed)
    return head + done


def person() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def check_approvable(entry: Entry, *, halted: bool = False) -> None:
    """Refuses what cannot be approved; `halted`: an `approved` one may be an approve that
    stopped half-way, which the approve finds out under the decision lock."""
    if entry.state not in APPROVABLE and not (halted and entry.state == "approved"):
        raise InboxError(
            f"suggestion {entry.uid[:12]} is {entry.state}"
            + (f" ({entry.state_reason})" if entry.state_reason else "")
            + "; only pending, held or failed suggestions can be approved"
        )


def not_approved(entry: Entry, exc: PipelinesError) -> PipelinesError:
    """The answer to an approve the server was not there for (`exc`, its QueueUnreachable)."""
    from asapo_pipelines_bluesky.queue import QueueUnreachable

    if entry.state == "approved":  # its approve stopped half-way: only the server knows more
        return QueueUnreachable(
            f"suggestion {entry.uid[:12]} stays approved but not queued: {exc.message}"
        )
    return QueueUnreachable(
        f"suggestion {entry.uid[:12]} stays {entry.state}, not approved: {exc.message}"
    )


def approve(inbox: Inbox, params: QueueParams, uid: str, *, by: str, reason: str = "") -> Entry:
    """A person approves: recorded, then queued at once (once, whatever was tried before).

    Nothing is recorded while the server does not answer: an approve nobody could send leaves
    the suggestion as it was (a refusal, or an answer lost after sending, marks it failed).
    The decision lock is held from the first question to the server until its answer to the
    submit is recorded: an approve killed meanwhile leaves `approved`, which the next one to
    hold the lock `recover`s."""
    from asapo_pipelines_bluesky.queue import QueueRefused, QueueUnreachable

    entry = inbox.find(uid)
    check_approvable(entry, halted=True)
    with connect(inbox, params, entry) as client, inbox.deciding():
        try:
            states = ask(inbox, client)
        except QueueUnreachable as exc:
            raise not_approved(inbox.get(entry.uid) or entry, exc) from None
        except QueueRefused:
            pass  # the server is there: the submit below asks again and records its reason
        else:
            recover(inbox, states, entry.instance)  # found under the lock: stopped half-way
        # recorded only if nobody decided meanwhile: a second approve at the same moment
        # (a double click, the viewer and the command line) says what became of the first
        # instead of adding the item a second time
        claimed, entry = inbox.claim(
            entry.uid,
            "approved",
            reason or f"approved by {by}",
            from_states=APPROVABLE,
            decision="approve",
            by=by,
            said=reason,
        )
        if not claimed:
            check_approvable(entry)  # raises: what became of the other decision
        return submit(inbox, client, entry)


def check_rejectable(entry: Entry) -> None:
    if entry.state == "submitted":
        # its item waits on the server's queue: only the operator can take it off; the bridge
        # then notices (`gone`) and the agent stops counting its scans
        item = entry.item_uid or "<item uid>"
        raise InboxError(
            f"suggestion {entry.uid[:12]} is submitted (its item is on the queue server's "
            f"queue), so it cannot be rejected: remove the item with `qserver queue item "
            f"remove '{item}'` and the next listing, approve or suggestion the bridge "
            f"receives marks it failed ({REMOVED}), so the agent no longer counts its scans"
        )
    if entry.state not in REJECTABLE:
        raise InboxError(
            f"suggestion {entry.uid[:12]} is {entry.state}; only pending, held, approved or "
            "failed suggestions can be rejected"
        )


def recover_before_reject(inbox: Inbox, params: QueueParams, entry: Entry) -> None:
    """`recover` approved `entry` (under the decision lock) before a reject: the server's item
    makes it submitted, which cannot be rejected; no item makes it failed, which can. A server
    that cannot be asked refuses the reject: a `rejected` suggestion is followed no more, so an
    item the server did take would run unseen by the inbox, the agent and the budgets, while an
    `approved` one is found by the next listing or bridge start once the server answers."""
    from asapo_pipelines_bluesky.queue import QueueClient, QueueError, QueueUnreachable

    try:
        # not `connect`: a key file that cannot be read must not mark the suggestion failed
        with QueueClient(params) as client:
            states = ask(inbox, client)
    except QueueError as exc:
        unreachable = isinstance(exc, QueueUnreachable)
        why = (
            f"the queue server at {params.control_address} cannot be asked whether it took "
            f"its item (no answer within {params.timeout:g} s)"
            if unreachable
            else f"the queue server cannot be asked whether it took its item ({exc.message})"
        )
        raise (QueueUnreachable if unreachable else QueueError)(
            f"suggestion {entry.uid[:12]} stays approved, not rejected: its approve stopped "
            f"half-way and {why}, so the item may be queued; reject it again once the server "
            "answers"
        ) from None
    recover(inbox, states, entry.instance)


def reject(
    inbox: Inbox, uid: str, *, by: str, reason: str, params: QueueParams | None = None
) -> Entry:
    """A person rejects. An `approved` suggestion is one whose approve stopped half-way (found
    under the decision lock): the queue server (`params`) is asked first whether it took the
    item, so that nothing the server holds is recorded as rejected."""
    entry = inbox.find(uid)
    check_rejectable(entry)
    if not reason.strip():
        raise InboxError("give the reason for rejecting with --reason TEXT")
    with inbox.deciding():  # after an approve under way, which may be queueing the item
        current = inbox.get(entry.uid) or entry
        if current.state == "approved" and params is not None:
            recover_before_reject(inbox, params, current)
        claimed, entry = inbox.claim(
            entry.uid,
            "rejected",
            reason,
            from_states=REJECTABLE,
            decision="reject",
            by=by,
            said=reason,
        )
    if not claimed:
        check_rejectable(entry)  # raises: another decision got there first
    return entry
