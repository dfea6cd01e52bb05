"""An approve that stops half-way: `pipeline suggestions FILE approve ID` killed after it recorded
the suggestion `approved` and before it recorded the queue server's answer. The killed process
is the real command, whose client kills it (SIGKILL, nothing cleaned up) at that moment: before
its `item_add` request leaves, or just after the server took the item. Nothing approved is lost
(the next listing, approve or suggestion the bridge receives finds it) and nothing is queued
twice (the server is asked for the suggestion's item first)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bluesky_services import stop

from asapo_pipelines_bluesky.inbox import Inbox

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")

#: `pipeline` whose queue-server client kills its own process at `item_add`: "before" the
#: request is sent, or "after" the server answered it (argv[1]); the rest is pipeline's argv
KILLED_AT_ITEM_ADD = """
import os, signal, sys
from bluesky_queueserver_api.zmq import REManagerAPI
from asapo_pipelines.cli import main

when = sys.argv.pop(1)
item_add = REManagerAPI.item_add

def killed(self, *args, **kwargs):
    if when == "after":
        item_add(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

REManagerAPI.item_add = killed
sys.argv[0] = "pipeline"
sys.exit(main())
"""


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def killed_approve(when: str, file: Path, uid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", KILLED_AT_ITEM_ADD, when, "suggestions", file.name, "approve", uid],
        cwd=file.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def listed(file: Path) -> dict[str, dict[str, object]]:
    result = pipeline("suggestions", file.name, "--json", cwd=file.parent)
    assert result.returncode == 0, result.stderr
    return {e["uid"]: e for e in json.loads(result.stdout)}


def on_server(queue_server) -> list[str]:
    items = queue_server.suggestion_items()
    return [i["meta"]["suggestion"]["uid"] for where in items.values() for i in where]


@pytest.fixture
def inbox(tmp_path: Path, queue_server, run_unit, make_suggestion):
    """The P65 example on the test's queue server, its inbox holding two pending suggestions."""
    return p65_inbox(tmp_path, queue_server, run_unit, make_suggestion)


def p65_inbox(tmp_path: Path, queue_server, run_unit, make_suggestion, timeout: float = 5):
    (tmp_path / "data").mkdir()
    for scan in sorted((REPO / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, tmp_path / "data")
    file = tmp_path / EXAMPLE.name
    anchor = "      user: p65-agent\n"
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", queue_server.control)
    assert anchor in text
    file.write_text(text.replace(anchor, f"{anchor}      timeout: {timeout:g}\n"))
    path = tmp_path / ".pipeline-data" / "suggestions.sqlite"
    bodies = [make_suggestion(target="GOE"), make_suggestion(target="CU")]
    params = {"control_address": queue_server.control, "inbox": str(path)}
    run_unit("bluesky.queue", bodies, params=params)
    return file, path, params, [str(b["uid"]) for b in bodies]


def state(path: Path, uid: str) -> str:
    inbox = Inbox(path)
    try:
        entry = inbox.get(uid)
        assert entry is not None
        return entry.state
    finally:
        inbox.close()


def test_an_approve_killed_before_the_item_was_queued_is_said_and_approved_again_once(
    inbox, queue_server
):
    file, path, _params, (goe, _cu) = inbox
    killed = killed_approve("before", file, goe[:8])
    assert killed.returncode == -9, killed.stderr
    assert state(path, goe) == "approved"  # what the killed approve left
    assert on_server(queue_server) == []

    # nobody holds the decision lock: the listing finds the approve stopped, says what to do
    entry = listed(file)[goe]
    assert entry["state"] == "failed"
    assert entry["state_reason"].startswith(f"approved by {entry['decisions'][0]['by']} at ")
    assert entry["state_reason"].endswith(
        "but the approve stopped before the item was queued (the queue server has no item for "
        "it); approve it again to queue it"
    )
    table = pipeline("suggestions", file.name, cwd=file.parent)
    assert "approve it again" in table.stdout

    again = pipeline("suggestions", file.name, "approve", goe[:8], cwd=file.parent)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"suggestion {goe[:12]} approved and submitted"
    assert on_server(queue_server) == [goe]
    assert [d["decision"] for d in listed(file)[goe]["decisions"]] == ["approve", "approve"]


def test_an_approve_killed_after_the_server_took_the_item_is_followed_not_queued_again(
    inbox, queue_server
):
    file, path, _params, (goe, _cu) = inbox
    killed = killed_approve("after", file, goe)
    assert killed.returncode == -9, killed.stderr
    assert state(path, goe) == "approved"
    assert on_server(queue_server) == [goe]
    item_uid = queue_server.suggestion_items()["queue"][0]["item_uid"]

    # an approve (no listing before it) finds the item on the server and queues nothing more
    again = pipeline("suggestions", file.name, "approve", goe, cwd=file.parent)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"error: suggestion {goe[:12]} is submitted; only pending, held or failed suggestions "
        "can be approved"
    )
    entry = listed(file)[goe]
    assert (entry["state"], entry["item_uid"]) == ("submitted", item_uid)
    assert on_server(queue_server) == [goe]


def test_the_bridge_finds_an_approve_that_stopped_when_the_next_suggestion_comes(
    inbox, queue_server, run_unit, make_suggestion
):
    file, path, params, (goe, cu) = inbox
    for killed_when, uid, found in (("after", goe, "submitted"), ("before", cu, "failed")):
        assert killed_approve(killed_when, file, uid).returncode == -9
        assert state(path, uid) == "approved"
        result = run_unit("bluesky.queue", [make_suggestion(target=uid)], params=params)
        told = {v["uid"]: v["state"] for v in result.values("status")}
        assert told[uid] == found  # the agent hears of it
        assert state(path, uid) == found
    assert on_server(queue_server) == [goe]


def test_an_approve_under_way_is_not_taken_for_one_that_stopped(
    inbox, queue_server, run_unit, make_suggestion
):
    """An approve holds the decision lock until the server's answer is recorded: its
    `approved` meanwhile is left alone by a listing and by the bridge."""
    file, path, params, (goe, _cu) = inbox
    assert killed_approve("before", file, goe).returncode == -9
    held = Inbox(path)
    try:
        with held.deciding():  # as the approve under way holds it
            assert listed(file)[goe]["state"] == "approved"
            run_unit("bluesky.queue", [make_suggestion(target="FE")], params=params)
            assert state(path, goe) == "approved"
    finally:
        held.close()
    assert listed(file)[goe]["state"] == "failed"
    assert on_server(queue_server) == []


def settled(path: Path, uid: str, *, within: float = 60.0) -> str:
    """The state of `uid` once it is no longer `approved` (what it still is after `within`
    seconds, a bound for a slow machine, not a measurement)."""
    import time

    deadline = time.monotonic() + within
    while (found := state(path, uid)) == "approved" and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_the_bridge_finds_an_approve_that_stopped_when_it_starts_without_a_new_suggestion(
    inbox, queue_server, unit_harness, make_suggestion
):
    """No suggestion need come: the bridge asks the server in the background as it starts."""
    file, path, params, (goe, cu) = inbox
    for killed_when, uid, found in (("after", goe, "submitted"), ("before", cu, "failed")):
        assert killed_approve(killed_when, file, uid).returncode == -9
        assert state(path, uid) == "approved"
        bridge = unit_harness("bluesky.queue", params=params).start()
        assert settled(path, uid) == found
        # the agent hears of it with what the bridge sends next
        told = bridge.send(make_suggestion(target=uid))
        assert {v["uid"]: v["state"] for v in told.values("status")}[uid] == found
        bridge.shutdown()
    assert on_server(queue_server) == [goe]  # found, not queued again


def test_a_reject_asks_the_server_whether_an_approve_that_stopped_queued_the_item(
    inbox, queue_server
):
    file, path, _params, (goe, cu) = inbox
    # the server took the item: it is not recorded as rejected, the operator is told to remove it
    assert killed_approve("after", file, goe).returncode == -9
    assert state(path, goe) == "approved"
    item_uid = queue_server.suggestion_items()["queue"][0]["item_uid"]
    refused = pipeline("suggestions", file.name, "reject", goe, "--reason", "x", cwd=file.parent)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith(
        f"error: suggestion {goe[:12]} is submitted (its item is on the queue server's queue), "
        f"so it cannot be rejected: remove the item with `qserver queue item remove '{item_uid}'`"
    )
    assert state(path, goe) == "submitted"
    # the server has no item for it: rejected
    assert killed_approve("before", file, cu).returncode == -9
    assert state(path, cu) == "approved"
    done = pipeline("suggestions", file.name, "reject", cu, "--reason", "x", cwd=file.parent)
    assert (done.returncode, done.stdout.strip()) == (0, f"suggestion {cu[:12]} rejected")
    assert on_server(queue_server) == [goe]


def test_a_reject_of_an_approve_that_stopped_is_refused_while_the_server_is_down(
    tmp_path, own_server, run_unit, make_suggestion
):
    """Nobody can say whether the server took the item: the suggestion stays approved (the
    bridge and the listing find out once the server answers), in one sentence."""
    file, path, _params, (goe, _cu) = p65_inbox(
        tmp_path, own_server, run_unit, make_suggestion, timeout=3
    )
    assert killed_approve("after", file, goe).returncode == -9
    stop(own_server.procs[1])  # the RE Manager, by the pid this test started
    refused = pipeline("suggestions", file.name, "reject", goe, "--reason", "x", cwd=file.parent)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: suggestion {goe[:12]} stays approved, not rejected: its approve stopped "
        f"half-way and the queue server at {own_server.control} cannot be asked whether it "
        "took its item (no answer within 3 s), so the item may be queued; reject it again once "
        "the server answers"
    )
    assert state(path, goe) == "approved"
