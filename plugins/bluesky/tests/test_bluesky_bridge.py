"""`bluesky.queue` in-process (the worker's runner) against a real RE Manager on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from bluesky_services import free_port

from asapo_pipelines_bluesky.inbox import Inbox


def params(server, tmp_path: Path, **extra):
    return server.params(inbox=str(tmp_path / "inbox.sqlite"), **extra)


def states(result) -> list[str]:
    return [v["state"] for v in result.values("status")]


def test_auto_mode_queues_runs_and_completes_with_the_suggestions_metadata(
    queue_server, run_unit, make_suggestion, tmp_path
):
    body = make_suggestion(scans=2)
    result = run_unit(
        "bluesky.queue",
        [body],
        params=params(queue_server, tmp_path, mode="auto", start_queue=True),
    )
    assert result.errors == []
    assert states(result) == ["pending", "submitted"]
    status = result.values("status")[-1]
    assert set(status) == {"uid", "target", "state", "scans", "reason", "time"}
    assert (status["uid"], status["target"], status["scans"]) == (body["uid"], "GOE", 2)

    item = queue_server.wait_history(body["uid"])
    assert item["result"]["exit_status"] == "completed"
    assert len(item["result"]["run_uids"]) == 2  # the two repeats the agent asked for
    meta = item["meta"]["suggestion"]
    assert meta["agent"] == "xas.convergence-agent"
    assert meta["reason"] == body["reason"]
    assert item["user"] == "asapo-pipelines"

    # the next suggestion's turn follows the first to completed, and says so on `status`
    second = make_suggestion(target="CU", scans=1)
    result = run_unit("bluesky.queue", [second], params=params(queue_server, tmp_path, mode="auto"))
    sent = [(v["uid"], v["state"]) for v in result.values("status")]
    assert (body["uid"], "completed") in sent
    assert (second["uid"], "submitted") in sent


def test_approve_mode_queues_nothing_until_approved_and_never_a_rejected_one(
    queue_server, run_unit, make_suggestion, tmp_path
):
    from asapo_pipelines_bluesky import bridge
    from asapo_pipelines_bluesky.params import QueueParams

    first, second = make_suggestion(target="A"), make_suggestion(target="B")
    p = params(queue_server, tmp_path, mode="approve")
    result = run_unit("bluesky.queue", [first, second], params=p)
    assert states(result) == ["pending", "pending"]
    assert queue_server.suggestion_items() == {"queue": [], "running": [], "history": []}

    inbox = Inbox(tmp_path / "inbox.sqlite")
    bridge.reject(inbox, second["uid"], by="alice", reason="sample B is used up")
    entry = bridge.approve(inbox, QueueParams(**p), first["uid"][:10], by="bob", reason="ok")
    assert entry.state == "submitted"
    queued = queue_server.suggestion_items()["queue"]
    assert [i["meta"]["suggestion"]["uid"] for i in queued] == [first["uid"]]

    # decisions are kept: who, what, when, why
    decisions = inbox.decisions()
    assert [(d["uid"], d["decision"], d["by"], d["reason"]) for d in decisions] == [
        (second["uid"], "reject", "alice", "sample B is used up"),
        (first["uid"], "approve", "bob", "ok"),
    ]
    assert all(d["time"] for d in decisions)
    # a rejected suggestion cannot be approved later by mistake
    with pytest.raises(
        Exception, match=r"is rejected \(sample B is used up\); only pending, held or failed"
    ):
        bridge.approve(inbox, QueueParams(**p), second["uid"], by="bob")
    assert len(queue_server.suggestion_items()["queue"]) == 1

    # the bridge sends what people decided on its next turn
    result = run_unit("bluesky.queue", [make_suggestion(target="C")], params=p)
    sent = {(v["uid"], v["state"]) for v in result.values("status")}
    assert {(first["uid"], "approved"), (first["uid"], "submitted")} <= sent
    assert (second["uid"], "rejected") in sent


def test_a_restarted_bridge_queues_nothing_twice(queue_server, run_unit, make_suggestion, tmp_path):
    body = make_suggestion()
    p = params(queue_server, tmp_path, mode="auto")
    run_unit("bluesky.queue", [body], params=p)
    # the same message again (redelivered after a crash), by a new process with the same inbox
    again = run_unit("bluesky.queue", [body], params=p)
    assert again.errors == []
    # ... and with the inbox lost too: the queue server itself is asked for the uid
    lost = run_unit(
        "bluesky.queue", [body], params=params(queue_server, tmp_path / "new", mode="auto")
    )
    assert lost.errors == []
    assert states(lost)[-1] == "submitted"
    assert "already on the queue server" in lost.values("status")[-1]["reason"]
    assert len(queue_server.suggestion_items()["queue"]) == 1


def test_budgets_hold_suggestions_with_the_reason(
    queue_server, run_unit, make_suggestion, tmp_path
):
    p = params(queue_server, tmp_path, mode="auto", budget={"repeats_per_sample": 3})
    first, second, other = (
        make_suggestion(target="GOE", scans=2),
        make_suggestion(target="GOE", scans=2),
        make_suggestion(target="CU", scans=3),
    )
    result = run_unit("bluesky.queue", [first, second, other], params=p)
    last = {v["uid"]: v for v in result.values("status")}
    assert last[first["uid"]]["state"] == "submitted"
    assert last[second["uid"]]["state"] == "held"
    assert last[second["uid"]]["reason"] == (
        "over budget: 2 scans of GOE already queued, 2 more would exceed repeats_per_sample 3"
    )
    assert last[other["uid"]]["state"] == "submitted"
    assert len(queue_server.suggestion_items()["queue"]) == 2

    window = params(
        queue_server, tmp_path / "w", mode="auto", budget={"window_scans": 2, "window_minutes": 5}
    )
    result = run_unit("bluesky.queue", [make_suggestion(target="X", scans=3)], params=window)
    assert result.values("status")[-1]["state"] == "held"
    assert "in the last 5 min" in result.values("status")[-1]["reason"]


def test_a_suggestion_without_plan_gets_one_from_the_template(
    queue_server, run_unit, make_suggestion, tmp_path
):
    body = make_suggestion(target="GOE/Fe/K/transmission", scans=1)
    body["plan"] = None
    body["arguments"]["group"] = {"sample": "GOE", "element": "Fe"}
    template = {
        "name": "xas_scan",
        "kwargs": {
            "sample": "{group[sample]}",
            "element": "{group[element]}",
            "repeats": "{scans}",
        },
    }
    result = run_unit(
        "bluesky.queue", [body], params=params(queue_server, tmp_path, mode="auto", plan=template)
    )
    assert result.errors == []
    (item,) = queue_server.suggestion_items()["queue"]
    assert item["name"] == "xas_scan"
    assert item["kwargs"] == {"sample": "GOE", "element": "Fe", "repeats": 1}


def test_stop_suggestions_are_noted_and_queue_nothing(
    queue_server, run_unit, make_suggestion, tmp_path
):
    body = make_suggestion()
    body.update(action="stop", plan=None, arguments={})
    result = run_unit("bluesky.queue", [body], params=params(queue_server, tmp_path, mode="auto"))
    assert result.errors == []
    assert result.values("status") == []
    assert Inbox(tmp_path / "inbox.sqlite").get(body["uid"]).state == "noted"
    assert queue_server.suggestion_items()["queue"] == []


# -- bad input ---------------------------------------------------------------------------------


def test_wrong_plan_name_goes_to_the_error_stream_with_the_servers_reason_once(
    queue_server, run_unit, make_suggestion, tmp_path
):
    body = make_suggestion()
    body["plan"]["name"] = "xas_scna"
    p = params(queue_server, tmp_path, mode="auto")
    result = run_unit("bluesky.queue", [body], params=p, retry={"attempts": 2})
    (error,) = result.errors
    assert error["error"] == (
        "the queue server refused the plan: Failed to add an item: Plan validation failed: "
        "Plan 'xas_scna' is not in the list of allowed plans"
    )
    # retries (and a redelivery) report the recorded refusal; only a person's approve asks again
    assert error["attempts"] == 3
    entry = Inbox(tmp_path / "inbox.sqlite").get(body["uid"])
    assert entry.state == "failed"
    assert "xas_scna" in entry.state_reason
    assert queue_server.suggestion_items()["queue"] == []


def test_queue_server_down_is_one_sentence_and_the_suggestion_waits_failed(
    run_unit, make_suggestion, tmp_path
):
    body = make_suggestion()
    port = free_port()  # nobody listens there
    result = run_unit(
        "bluesky.queue",
        [body],
        params={
            "control_address": f"tcp://127.0.0.1:{port}",
            "timeout": 0.5,
            "mode": "auto",
            "inbox": str(tmp_path / "inbox.sqlite"),
        },
    )
    (error,) = result.errors
    assert error["error"] == (
        f"the queue server at tcp://127.0.0.1:{port} did not answer a queue request within "
        "0.5 s; is start-re-manager running there?"
    )
    assert Inbox(tmp_path / "inbox.sqlite").get(body["uid"]).state == "failed"
    assert len(result.acknowledged) == 1  # recorded in the inbox: nothing lost


def test_leftovers_of_an_earlier_run_in_redis_are_recognised_and_left_alone(
    queue_server, run_unit, make_suggestion, tmp_path
):
    """The queue server's Redis still holds an earlier run's items: one of them is this
    suggestion (a bridge killed after adding it), one is an operator's own plan."""
    body = make_suggestion()
    api = queue_server.api()
    try:
        api.item_add({"name": "xas_scan", "kwargs": {"sample": "operator"}, "item_type": "plan"})
        api.item_add(
            {
                "name": "xas_scan",
                "kwargs": {"sample": "GOE"},
                "item_type": "plan",
                "meta": {"suggestion": {"uid": body["uid"]}},
            }
        )
    finally:
        api.close()
    result = run_unit("bluesky.queue", [body], params=params(queue_server, tmp_path, mode="auto"))
    assert result.errors == []
    assert result.values("status")[-1]["state"] == "submitted"
    items = queue_server.suggestion_items()["queue"]
    assert [i["meta"]["suggestion"]["uid"] for i in items] == [body["uid"]]
    api = queue_server.api()
    try:
        assert len(api.queue_get(reload=True)["items"]) == 2  # the operator's plan untouched
    finally:
        api.close()
