"""A stop that cancels earlier suggestions (`arguments.cancel_suggestions`, as
xas.convergence-agent sends it when repeats it asked for are still queued), against a real RE
Manager on loopback: the bridge takes its own still-queued items off the plan queue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from asapo_pipelines_bluesky.inbox import Inbox

PIPELINE = str(Path(sys.executable).parent / "pipeline")


def params(server, tmp_path: Path, **extra):
    return server.params(inbox=str(tmp_path / "inbox.sqlite"), **extra)


def stop_cancelling(make_suggestion, *uids: str) -> dict[str, Any]:
    """The agent's stop: its reason says the repeats are not needed, its arguments name them."""
    body = make_suggestion()
    body.update(
        action="stop",
        plan=None,
        reason="stop: noise reached the target; 2 scans asked for earlier are still queued or "
        "being measured; they are not needed: cancel them",
        arguments={"in_flight": 2, "cancel": 2, "cancel_suggestions": list(uids)},
    )
    return body


def queue(server) -> list[dict[str, Any]]:
    api = server.api()
    try:
        return list(api.queue_get(reload=True)["items"])
    finally:
        api.close()


def add_by_hand(server, **meta: Any) -> None:
    api = server.api()
    try:
        item = {"name": "xas_scan", "kwargs": {"sample": "operator"}, "item_type": "plan"}
        api.item_add({**item, "meta": meta} if meta else item)
    finally:
        api.close()


def owner(item: dict[str, Any]) -> str:
    suggestion = (item.get("meta") or {}).get("suggestion")
    return suggestion["uid"] if suggestion else item["kwargs"]["sample"]


def test_a_stop_removes_the_queued_items_of_the_suggestions_it_cancels_and_nothing_else(
    queue_server, run_unit, make_suggestion, tmp_path
):
    add_by_hand(queue_server)  # the operator's own plan, queued first
    first, second = make_suggestion(scans=2), make_suggestion(scans=1)
    p = params(queue_server, tmp_path, mode="auto")
    run_unit("bluesky.queue", [first, second], params=p)
    assert [owner(i) for i in queue(queue_server)] == ["operator", first["uid"], second["uid"]]

    stop = stop_cancelling(make_suggestion, first["uid"])
    result = run_unit("bluesky.queue", [stop], params=p)

    assert result.errors == []
    assert [owner(i) for i in queue(queue_server)] == ["operator", second["uid"]]
    inbox = Inbox(tmp_path / "inbox.sqlite")
    # what the bridge did, in one line, where people look (`pipeline suggestions FILE`)
    assert inbox.get(stop["uid"]).state_reason == (
        f"stop: cancel 1 earlier suggestion: removed 1 queued item ({first['uid'][:12]})"
    )
    # the agent hears the cancelled repeats are not coming
    cancelled = inbox.get(first["uid"])
    assert cancelled.state == "rejected"
    assert cancelled.state_reason == (
        f"cancelled by stop {stop['uid'][:12]}: not needed, removed from the queue"
    )
    assert (first["uid"], "rejected") in [(v["uid"], v["state"]) for v in result.values("status")]
    assert inbox.get(second["uid"]).state == "submitted"


def test_items_the_bridge_cannot_prove_its_own_stay_and_the_line_says_why(
    queue_server, run_unit, make_suggestion, tmp_path
):
    first, second, third = (make_suggestion(scans=1) for _ in range(3))
    p = params(queue_server, tmp_path, mode="auto")
    run_unit("bluesky.queue", [first, second, third], params=p)
    api = queue_server.api()
    try:
        # the operator takes `second` off by hand and queues a copy of `first`'s item
        (item,) = [i for i in queue(queue_server) if owner(i) == second["uid"]]
        api.item_remove(uid=item["item_uid"])
    finally:
        api.close()
    add_by_hand(queue_server, suggestion={"uid": first["uid"], "instance": "unit"})

    stop = stop_cancelling(make_suggestion, first["uid"], second["uid"], "0123456789abcdef")
    run_unit("bluesky.queue", [stop], params=p)

    # the bridge's own item of `first` is gone; the operator's copy and `third` stay
    assert [owner(i) for i in queue(queue_server)] == [third["uid"], first["uid"]]
    assert queue(queue_server)[1]["kwargs"]["sample"] == "operator"
    assert Inbox(tmp_path / "inbox.sqlite").get(stop["uid"]).state_reason == (
        f"stop: cancel 3 earlier suggestions: removed 1 queued item ({first['uid'][:12]}); "
        f"stayed: {first['uid'][:12]} queued, but not as the bridge queued it (edited or added "
        f"by hand): left there, {second['uid'][:12]} removed by hand, 0123456789ab unknown to "
        "this bridge"
    )


def test_in_approve_mode_the_bridge_only_says_what_it_would_remove(
    queue_server, run_unit, make_suggestion, tmp_path
):
    from asapo_pipelines_bluesky import bridge
    from asapo_pipelines_bluesky.params import QueueParams

    first = make_suggestion(scans=2)
    p = params(queue_server, tmp_path, mode="approve")
    run_unit("bluesky.queue", [first], params=p)
    inbox = Inbox(tmp_path / "inbox.sqlite")
    bridge.approve(inbox, QueueParams(**p), first["uid"], by="bob")
    (item,) = queue(queue_server)

    stop = stop_cancelling(make_suggestion, first["uid"])
    result = run_unit("bluesky.queue", [stop], params=p)

    assert result.errors == []
    assert queue(queue_server) == [item]
    assert inbox.get(first["uid"]).state == "submitted"
    assert inbox.get(stop["uid"]).state_reason == (
        "stop: cancel 1 earlier suggestion: mode approve, so the queue is left as it is; it "
        f"would remove 1 queued item (suggestion {first['uid'][:12]}: item {item['item_uid']}); "
        "remove it with `qserver queue item remove '<item uid>'`"
    )


def test_suggestions_a_stop_cancels_before_anyone_approved_them_cannot_be_approved_later(
    queue_server, run_unit, make_suggestion, tmp_path
):
    """Approve mode at night: the agent asked for repeats nobody approved yet, then said stop,
    they are not needed. In the morning the inbox must not offer them for approval."""
    example = Path(__file__).resolve().parents[3] / "examples" / "p65-xas-bluesky.pipeline.yaml"
    file = tmp_path / example.name
    file.write_text(example.read_text().replace("tcp://localhost:60615", queue_server.control))
    p = params(queue_server, tmp_path, mode="approve")
    p["inbox"] = str(tmp_path / ".pipeline-data" / "suggestions.sqlite")
    first, second = make_suggestion(scans=3), make_suggestion(scans=2)
    stop = stop_cancelling(make_suggestion, first["uid"], second["uid"])
    result = run_unit("bluesky.queue", [first, second, stop], params=p)
    assert result.errors == []

    approve = subprocess.run(
        [PIPELINE, "suggestions", file.name, "approve", first["uid"][:8]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert approve.returncode == 1
    reason = f"cancelled by stop {stop['uid'][:12]}: not needed, never queued"
    assert approve.stderr == (
        f"error: suggestion {first['uid'][:12]} is rejected ({reason}); only pending, held or "
        "failed suggestions can be approved\n"
    )
    assert queue(queue_server) == []
    inbox = Inbox(tmp_path / ".pipeline-data" / "suggestions.sqlite")
    try:
        assert inbox.get(second["uid"]).state == "rejected"
        assert inbox.get(stop["uid"]).state_reason == (
            "stop: cancel 2 earlier suggestions: mode approve; no queued item of the bridge's to "
            f"remove; withdrew 2 suggestions never queued ({first['uid'][:12]}, "
            f"{second['uid'][:12]})"
        )
    finally:
        inbox.close()
    # the agent hears they are not coming
    sent = [(v["uid"], v["state"]) for v in result.values("status")]
    assert (first["uid"], "rejected") in sent
    assert (second["uid"], "rejected") in sent

    # the agent's next stop names them again (they were in flight for it until it heard)
    again = stop_cancelling(make_suggestion, first["uid"], second["uid"])
    assert run_unit("bluesky.queue", [again], params=p).errors == []
    inbox = Inbox(tmp_path / ".pipeline-data" / "suggestions.sqlite")
    try:
        assert inbox.get(again["uid"]).state_reason == (
            "stop: cancel 2 earlier suggestions: mode approve; no queued item of the bridge's to "
            f"remove; stayed: {first['uid'][:12]} rejected already, {second['uid'][:12]} "
            "rejected already"
        )
    finally:
        inbox.close()


def test_a_cancel_list_that_is_no_list_of_uids_is_one_sentence(
    queue_server, run_unit, make_suggestion, tmp_path
):
    stop = stop_cancelling(make_suggestion)
    stop["arguments"]["cancel_suggestions"] = "abc"
    result = run_unit("bluesky.queue", [stop], params=params(queue_server, tmp_path, mode="auto"))
    (error,) = result.errors
    assert error["error"] == (
        "arguments.cancel_suggestions must be a list of suggestion uids (strings), this "
        'suggestion has "abc"'
    )
    assert len(result.acknowledged) == 1


def test_a_cancel_the_server_does_not_answer_is_one_sentence_and_done_on_redelivery(
    queue_server, run_unit, make_suggestion, tmp_path
):
    from bluesky_services import free_port

    first = make_suggestion(scans=2)
    p = params(queue_server, tmp_path, mode="auto")
    run_unit("bluesky.queue", [first], params=p)
    stop = stop_cancelling(make_suggestion, first["uid"])
    port = free_port()  # nobody listens there
    gone = {**p, "control_address": f"tcp://127.0.0.1:{port}", "timeout": 0.5}
    result = run_unit("bluesky.queue", [stop], params=gone)

    (error,) = result.errors
    assert error["error"] == (
        f"the queued items of 1 earlier suggestion that suggestion {stop['uid'][:12]} cancels "
        f"were not removed: the queue server at tcp://127.0.0.1:{port} did not answer a queue "
        "request within 0.5 s; is start-re-manager running there?"
    )
    assert [owner(i) for i in queue(queue_server)] == [first["uid"]]
    # the same stop again (a redelivery, a replay of the error stream) once the server answers
    run_unit("bluesky.queue", [stop], params=p)
    assert queue(queue_server) == []


def test_the_running_item_is_never_removed(queue_server, run_unit, make_suggestion, tmp_path):
    import time

    running, queued = make_suggestion(scans=1), make_suggestion(scans=1)
    running["plan"]["kwargs"]["points"] = 20000  # long enough to be paused while it runs
    p = params(queue_server, tmp_path, mode="auto")
    run_unit("bluesky.queue", [running, queued], params=p)
    api = queue_server.api()
    try:
        api.queue_start()
        deadline = time.monotonic() + 60
        while api.status(reload=True)["re_state"] != "running":
            assert time.monotonic() < deadline, "the plan never started"
            time.sleep(0.05)
        # paused, the run stays the running item while the stop arrives
        api.re_pause(option="immediate")
        api.wait_for_idle_or_paused(timeout=60)

        stop = stop_cancelling(make_suggestion, running["uid"], queued["uid"])
        run_unit("bluesky.queue", [stop], params=p)

        assert (
            api.queue_get(reload=True)["running_item"]["meta"]["suggestion"]["uid"]
            == (running["uid"])
        )
        assert queue(queue_server) == []
        assert Inbox(tmp_path / "inbox.sqlite").get(stop["uid"]).state_reason == (
            f"stop: cancel 2 earlier suggestions: removed 1 queued item ({queued['uid'][:12]}); "
            f"stayed: {running['uid'][:12]} running"
        )
    finally:
        stop_the_plan(api)
        api.close()


def stop_the_plan(api: Any) -> None:
    """Abort what the test left running or paused, so that the next test finds the server idle."""
    if api.status(reload=True)["manager_state"] == "executing_queue":
        api.re_pause(option="immediate")
        api.wait_for_idle_or_paused(timeout=60)
    if api.status(reload=True)["manager_state"] == "paused":
        api.re_abort()
    api.wait_for_idle(timeout=60)
