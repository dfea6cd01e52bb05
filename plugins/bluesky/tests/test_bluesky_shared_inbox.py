"""Two bridges of one pipeline file sharing one inbox, each with its own queue server (two real
servers on loopback). Each suggestion is followed on, and approved to, its own bridge's server:
the listing asked the first bridge's server about all of them, found the second's items missing
there and marked them `failed` (removed from the queue without running), and an approve queued
the second's suggestion on the first's server. Each bridge's budget counts only the scans it
submitted to its own server (it counted the other bridge's too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")

SECOND = """  queue2:
    unit: bluesky.queue
    params: {{control_address: "{control}", mode: approve, user: p65-agent}}
    inputs: {{suggestions: plans}}
"""


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def on_server(server) -> list[str]:
    return [i["meta"]["suggestion"]["uid"] for w in server.suggestion_items().values() for i in w]


def test_each_suggestion_is_followed_and_approved_on_its_own_bridges_server(
    tmp_path, queue_server, own_server, unit_harness, make_suggestion
):
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", queue_server.control)
    file = tmp_path / EXAMPLE.name
    file.write_text(
        text.replace("deploy:\n", SECOND.format(control=own_server.control) + "deploy:\n")
    )
    checked = pipeline("validate", file.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    inbox = str(tmp_path / ".pipeline-data" / "suggestions.sqlite")

    goe, cu, fe = (make_suggestion(target=t) for t in ("GOE", "CU", "FE"))
    first = {"control_address": queue_server.control, "inbox": inbox, "mode": "auto"}
    unit_harness("bluesky.queue", params=first, instance="queue").run([goe])
    second = {"control_address": own_server.control, "inbox": inbox, "mode": "auto"}
    unit_harness("bluesky.queue", params=second, instance="queue2").run([cu])
    unit_harness("bluesky.queue", params={**second, "mode": "approve"}, instance="queue2").run([fe])
    assert (on_server(queue_server), on_server(own_server)) == ([goe["uid"]], [cu["uid"]])

    listed = pipeline("suggestions", file.name, "--json", cwd=tmp_path)
    assert (listed.returncode, listed.stderr) == (0, "")
    states = {e["uid"]: (e["state"], e["state_reason"]) for e in json.loads(listed.stdout)}
    assert states == {
        goe["uid"]: ("submitted", ""),
        cu["uid"]: ("submitted", ""),
        fe["uid"]: ("pending", ""),
    }

    approved = pipeline("suggestions", file.name, "approve", fe["uid"][:8], cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"suggestion {fe['uid'][:12]} approved and submitted"
    assert (on_server(queue_server), on_server(own_server)) == (
        [goe["uid"]],
        [cu["uid"], fe["uid"]],
    )


@pytest.mark.parametrize(
    "budget",
    [
        {"repeats_per_sample": 3},
        {"scans_per_run": 3},
        {"window_scans": 3, "window_minutes": 5},
    ],
    ids=["repeats_per_sample", "scans_per_run", "window_scans"],
)
def test_each_bridges_budget_counts_only_what_it_submitted_itself(
    tmp_path, queue_server, own_server, unit_harness, make_suggestion, budget
):
    """The first bridge's scans, queued on its own server, leave the second's budget untouched:
    the second held its first suggestion `over budget` with the first's scans counted."""
    inbox = str(tmp_path / "suggestions.sqlite")
    first = {"control_address": queue_server.control, "inbox": inbox, "mode": "auto"}
    second = {**first, "control_address": own_server.control, "budget": budget}
    theirs, mine, more = (make_suggestion(target="GOE", scans=2) for _ in range(3))

    unit_harness("bluesky.queue", params=first, instance="queue").run([theirs])
    queued = unit_harness("bluesky.queue", params=second, instance="queue2").run([mine])
    assert queued.errors == []
    assert [(s["state"], s["reason"]) for s in queued.values("status")][-1] == ("submitted", "")
    assert (on_server(queue_server), on_server(own_server)) == ([theirs["uid"]], [mine["uid"]])

    # its own scans still count: 2 queued by this bridge, 2 more exceed the 3 of its budget
    held = unit_harness("bluesky.queue", params=second, instance="queue2").run([more])
    status = held.values("status")[-1]
    assert (status["uid"], status["state"]) == (more["uid"], "held")
    assert status["reason"].startswith("over budget: 2 scans ")
    assert on_server(own_server) == [mine["uid"]]
