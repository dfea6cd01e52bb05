"""xas.convergence-agent with its `queue` port wired to this bridge's `status` output, against a
real RE Manager on loopback: the repeats it asked for count as in flight until the queue is done
with them, and its stop names every suggestion still waiting (queued, pending or held), so the
bridge takes them off the queue or withdraws them from the inbox."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines_bluesky.inbox import Inbox

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")

GROUP = {"sample": "GOE", "element": "Fe", "edge": "K", "mode": "transmission"}
TARGET = 0.8e-4
#: each scan's own noise: 1/sqrt(N) in the merge (no floor), so 8 scans reach the target
SINGLE = 2e-4


def merged(n: int) -> dict[str, Any]:
    """An `xas/merged` body of n repeats (what the agent reads of it)."""
    return {
        "group": GROUP,
        "n_merged": n,
        "rejected": [],
        "latest": f"scan{n}",
        "values": {"epsilon_k": SINGLE / math.sqrt(n)},
        "scans": [
            {"scan": f"scan{i + 1}", "accepted": True, "epsilon_k": SINGLE} for i in range(n)
        ],
    }


@pytest.fixture
def agent(unit_message):
    from asapo_pipelines.testing.harness import UnitHarness

    harness = UnitHarness("xas.convergence-agent", {"target_noise": TARGET})
    seen = 0

    def send(value: dict[str, Any], port: str) -> list[dict[str, Any]]:
        """The suggestions this message made (the harness's result holds all so far)."""
        nonlocal seen
        out = harness.send(unit_message(value, port=port))
        assert not out.errors
        plans = list(out.values("plans"))
        new, seen = plans[seen:], len(plans)
        return new

    try:
        yield send
    finally:
        harness.shutdown()


@pytest.fixture
def bridge(queue_server, tmp_path: Path):
    """The bluesky.queue unit; each call gives it suggestions, returns the statuses it sent."""
    from asapo_pipelines.testing.harness import UnitHarness

    def run(params: dict[str, Any], *suggestions: dict[str, Any]) -> list[dict[str, Any]]:
        harness = UnitHarness("bluesky.queue", params)
        try:
            out = None
            for body in suggestions:
                out = harness.send(body)
                assert not out.errors
            return list(out.values("status")) if out else []
        finally:
            harness.shutdown()

    return run


def queued_uids(server) -> list[str]:
    api = server.api()
    try:
        items = api.queue_get(reload=True)["items"]
    finally:
        api.close()
    return [item["meta"]["suggestion"]["uid"] for item in items]


def test_repeats_on_the_queue_stay_in_flight_until_done_and_the_stop_cancels_them(
    agent, bridge, queue_server, tmp_path
):
    params = queue_server.params(inbox=str(tmp_path / "inbox.sqlite"), mode="auto")
    (more,) = agent(merged(1), "merged")
    asked = more["arguments"]["scans"]
    assert more["action"] == "more_scans"
    assert asked >= 2
    for status in bridge(params, more):
        agent(status, "queue")
    assert queued_uids(queue_server) == [more["uid"]]  # the queue is stopped: they wait

    # 7 scans of the sample measured otherwise (by hand) reach the target; the repeats asked
    # for are still on the queue, so they are in flight, and the stop cancels them
    (stop,) = agent(merged(8), "merged")
    assert stop["action"] == "stop"
    assert stop["arguments"]["in_flight"] == asked
    assert stop["arguments"]["cancel"] == asked
    assert stop["arguments"]["cancel_suggestions"] == [more["uid"]]
    assert stop["arguments"]["metrics"]["in_flight"] == asked
    assert (
        f"{asked} scans asked for earlier are still queued or being measured; they are not "
        "needed: cancel them"
    ) in stop["reason"]

    statuses = bridge(params, stop)
    assert queued_uids(queue_server) == []
    assert (more["uid"], "rejected") in [(s["uid"], s["state"]) for s in statuses]
    for status in statuses:
        agent(status, "queue")
    # the queue is done with them: nothing in flight, nothing left to cancel
    (again,) = agent(merged(9), "merged")
    assert again["action"] == "stop"
    assert "cancel_suggestions" not in again["arguments"]
    assert again["arguments"]["metrics"]["in_flight"] == 0


def test_without_the_queue_port_any_new_scan_counts_as_a_repeat_asked_for(agent):
    """Nothing else tells the agent's repeats from others: new scans of the sample count."""
    (more,) = agent(merged(1), "merged")
    assert more["arguments"]["scans"] >= 2
    (stop,) = agent(merged(8), "merged")
    assert stop["action"] == "stop"
    assert stop["arguments"]["metrics"]["in_flight"] == 0
    assert "cancel_suggestions" not in stop["arguments"]


def test_a_stop_cancels_a_held_suggestion_so_nobody_approves_it_later(
    agent, bridge, queue_server, tmp_path
):
    from asapo_pipelines_bluesky import bridge as bridge_api
    from asapo_pipelines_bluesky.inbox import InboxError
    from asapo_pipelines_bluesky.params import QueueParams

    inbox = tmp_path / "inbox.sqlite"
    params = queue_server.params(inbox=str(inbox), mode="auto", budget={"repeats_per_sample": 1})
    (more,) = agent(merged(1), "merged")
    asked = more["arguments"]["scans"]
    statuses = bridge(params, more)
    assert statuses[-1]["state"] == "held"  # over budget: waits for a person
    for status in statuses:
        agent(status, "queue")

    (stop,) = agent(merged(8), "merged")
    assert stop["action"] == "stop"
    # held: not coming unless someone approves it
    assert stop["arguments"]["metrics"]["in_flight"] == 0
    assert stop["arguments"]["cancel_suggestions"] == [more["uid"]]
    assert stop["arguments"]["cancel"] == asked
    assert (
        f"{asked} scans asked for earlier are held for approval; they are not needed: cancel them"
    ) in stop["reason"]

    bridge(params, stop)
    withdrawn = Inbox(inbox)
    try:
        entry = withdrawn.get(more["uid"])
        assert entry.state == "rejected"
        assert entry.state_reason == (
            f"cancelled by stop {stop['uid'][:12]}: not needed, never queued"
        )
        with pytest.raises(InboxError, match="is rejected"):
            bridge_api.approve(withdrawn, QueueParams(**params), more["uid"], by="bob")
    finally:
        withdrawn.close()
    assert queued_uids(queue_server) == []
