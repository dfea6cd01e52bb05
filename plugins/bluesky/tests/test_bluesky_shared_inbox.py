"""Two bridges of one pipeline file sharing one inbox, each with its own queue server (two real
servers on loopback). Each suggestion is followed on, and approved to, its own bridge's server:
the listing asked the first bridge's server about all of them, found the second's items missing
there and marked them `failed` (removed from the queue without running), and an approve queued
the second's suggestion on the first's server."""

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
