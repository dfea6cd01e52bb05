"""A submitted suggestion whose item the operator takes off the queue server's queue by hand
(what the reject of a submitted suggestion tells them to do), against a real RE Manager on
loopback: the bridge notices the item is neither queued, running nor in the history, and the
suggestion becomes `failed`, saying so, which the agent counts as not coming."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def listed(file: Path) -> dict[str, dict[str, object]]:
    result = pipeline("suggestions", file.name, "--json", cwd=file.parent)
    assert result.returncode == 0, result.stderr
    return {e["uid"]: e for e in json.loads(result.stdout)}


@pytest.fixture
def example(tmp_path: Path, queue_server):
    """The P65 example on the test's queue server (approve mode) and its inbox's params."""
    (tmp_path / "data").mkdir()
    for scan in sorted((REPO / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, tmp_path / "data")
    file = tmp_path / EXAMPLE.name
    file.write_text(EXAMPLE.read_text().replace("tcp://localhost:60615", queue_server.control))
    path = tmp_path / ".pipeline-data" / "suggestions.sqlite"
    return file, {"control_address": queue_server.control, "inbox": str(path)}


def remove_by_hand(server, item_uid: str) -> None:
    """What the operator does with `qserver queue item remove '<item uid>'`."""
    api = server.api()
    try:
        api.item_remove(uid=item_uid)
    finally:
        api.close()


def test_a_submitted_item_removed_from_the_queue_by_hand_fails_the_suggestion_and_says_so(
    example, queue_server, run_unit, make_suggestion
):
    file, params = example
    body = make_suggestion(target="GOE", scans=2)
    run_unit("bluesky.queue", [body], params=params)
    uid = str(body["uid"])
    approved = pipeline("suggestions", file.name, "approve", uid[:8], cwd=file.parent)
    assert approved.returncode == 0, approved.stderr
    (item,) = queue_server.suggestion_items()["queue"]

    # a reject cannot take it off the queue: the error says what to do and what then happens
    rejected = pipeline(
        "suggestions", file.name, "reject", uid[:8], "--reason", "not needed", cwd=file.parent
    )
    assert rejected.returncode == 1
    assert rejected.stderr.strip() == (
        f"error: suggestion {uid[:12]} is submitted (its item is on the queue server's queue), "
        f"so it cannot be rejected: remove the item with `qserver queue item remove "
        f"'{item['item_uid']}'` and the next listing, approve or suggestion the bridge receives "
        "marks it failed (removed from the queue without running), so the agent no longer "
        "counts its scans"
    )
    assert "Traceback" not in rejected.stderr

    remove_by_hand(queue_server, item["item_uid"])

    entry = listed(file)[uid]
    assert entry["state"] == "failed"
    assert entry["state_reason"] == (
        f"removed from the queue without running: its item {item['item_uid']} is neither "
        "queued, running nor in the queue server's history; approve it again to queue it anew"
    )
    table = pipeline("suggestions", file.name, cwd=file.parent)
    assert "removed from the queue without running" in " ".join(table.stdout.split())

    # the agent hears it with the bridge's next suggestion: failed, its scans not coming
    result = run_unit("bluesky.queue", [make_suggestion(target="CU")], params=params)
    assert (uid, "failed") in [(v["uid"], v["state"]) for v in result.values("status")]

    # and it is approvable again: queued anew, once
    again = pipeline("suggestions", file.name, "approve", uid[:8], cwd=file.parent)
    assert again.returncode == 0, again.stderr
    (anew,) = queue_server.suggestion_items()["queue"]
    assert anew["meta"]["suggestion"]["uid"] == uid
    assert anew["item_uid"] != item["item_uid"]
    assert listed(file)[uid]["state"] == "submitted"


def test_an_item_that_ran_meanwhile_is_followed_to_completed_not_taken_for_removed(
    example, queue_server, run_unit, make_suggestion
):
    file, params = example
    body = make_suggestion(target="GOE", scans=1)
    run_unit("bluesky.queue", [body], params=params)
    uid = str(body["uid"])
    assert pipeline("suggestions", file.name, "approve", uid, cwd=file.parent).returncode == 0
    api = queue_server.api()
    try:
        api.queue_start()
    finally:
        api.close()
    queue_server.wait_history(uid)  # left the queue, ran, and is in the history

    entry = listed(file)[uid]
    assert (entry["state"], entry["state_reason"]) == ("completed", "")


def test_the_agent_stops_counting_the_scans_of_a_suggestion_whose_item_was_removed(
    queue_server, run_unit, unit_message, tmp_path
):
    """xas.convergence-agent with its `queue` port wired to the bridge: the repeats it asked for
    are in flight while queued; removed by hand, they are not, and the agent asks again."""
    from asapo_pipelines.testing.harness import UnitHarness

    group = {"sample": "GOE", "element": "Fe", "edge": "K", "mode": "transmission"}

    def merged(n: int) -> dict[str, object]:
        scans = [{"scan": f"scan{i + 1}", "accepted": True, "epsilon_k": 2e-4} for i in range(n)]
        return {
            "group": group,
            "n_merged": n,
            "rejected": [],
            "latest": f"scan{n}",
            "values": {"epsilon_k": 2e-4 / n**0.5},
            "scans": scans,
        }

    params = queue_server.params(inbox=str(tmp_path / "inbox.sqlite"), mode="auto")
    agent = UnitHarness("xas.convergence-agent", {"target_noise": 0.8e-4})
    try:
        (more,) = agent.send(unit_message(merged(1), port="merged")).values("plans")
        asked = more["arguments"]["scans"]
        for status in run_unit("bluesky.queue", [more], params=params).values("status"):
            agent.send(unit_message(status, port="queue"))
        (item,) = queue_server.suggestion_items()["queue"]
        remove_by_hand(queue_server, item["item_uid"])

        # the agent's next word reaches the bridge, which finds the item gone and says so
        waiting = list(agent.send(unit_message(merged(1), port="merged")).values("plans"))[-1]
        assert waiting["arguments"]["in_flight"] == asked  # it has not heard yet
        told = list(run_unit("bluesky.queue", [waiting], params=params).values("status"))
        assert (more["uid"], "failed") in [(s["uid"], s["state"]) for s in told]
        for status in told:
            agent.send(unit_message(status, port="queue"))

        # nothing in flight any more: the next merge asks for the scans still needed
        latest = list(agent.send(unit_message(merged(2), port="merged")).values("plans"))[-1]
        assert latest["action"] == "more_scans"
        assert latest["arguments"]["in_flight"] == 0
        assert latest["arguments"]["scans"] > 0
    finally:
        agent.shutdown()
