"""The inbox while the queue server is gone: a queue server of this test's own, stopped by the
pid the test started. The listing says so in one line with the address and when the server
last answered; an approve says it in one sentence, exits non-zero and leaves the suggestion as
it was."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from bluesky_services import stop

from asapo_pipelines_bluesky.inbox import Inbox

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def local_seconds(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def test_a_stopped_queue_server_is_said_in_the_listing_and_an_approve_changes_nothing(
    own_server, run_unit, make_suggestion, tmp_path
):
    from asapo_pipelines.viewer.inbox import InboxApi

    (tmp_path / "data").mkdir()
    for scan in sorted((REPO / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, tmp_path / "data")
    anchor = "      user: p65-agent\n"
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", own_server.control)
    assert anchor in text
    p65 = tmp_path / EXAMPLE.name
    p65.write_text(text.replace(anchor, f"{anchor}      timeout: 3\n"))
    inbox_path = tmp_path / ".pipeline-data" / "suggestions.sqlite"
    queued, waiting = make_suggestion(target="GOE"), make_suggestion(target="CU")
    run_unit(
        "bluesky.queue",
        [queued, waiting],
        params={"control_address": own_server.control, "inbox": str(inbox_path)},
    )

    # server up: one suggestion approved (submitted), the listing follows it without a word
    before = datetime.now()
    approved = pipeline("suggestions", p65.name, "approve", queued["uid"], cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    up = pipeline("suggestions", p65.name, cwd=tmp_path)
    assert (up.returncode, up.stderr) == (0, "")
    assert "submitted" in up.stdout
    heard_by = datetime.now()

    stop(own_server.procs[1])  # the RE Manager, by the pid this test started
    down = pipeline("suggestions", p65.name, cwd=tmp_path)
    assert down.returncode == 0, down.stderr  # the listing is still there, with the warning
    (line,) = down.stderr.splitlines()
    said = re.fullmatch(
        rf"warning: the queue server at {re.escape(own_server.control)} cannot be reached \(no "
        r"answer within 3 s\): the states shown are as last seen at "
        r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \S+",
        line,
    )
    assert said, line
    assert local_seconds(before) <= said.group(1) <= local_seconds(heard_by)
    assert down.stdout == up.stdout  # the same listing, the line above it on stderr
    as_json = pipeline("suggestions", p65.name, "--json", cwd=tmp_path)
    assert as_json.returncode == 0
    assert as_json.stderr.strip() == line
    assert {e["uid"]: e["state"] for e in json.loads(as_json.stdout)} == {
        queued["uid"]: "submitted",
        waiting["uid"]: "pending",
    }
    # the viewer reads the same listing: its page shows the same line
    viewer = InboxApi(p65, loopback_only=True).listing()
    assert viewer["notes"] == [line.removeprefix("warning: ")]

    # an approve nobody can send: one sentence, non-zero, the suggestion as it was
    refused = pipeline("suggestions", p65.name, "approve", waiting["uid"][:8], cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: suggestion {waiting['uid'][:12]} stays pending, not approved: the queue server "
        f"at {own_server.control} did not answer a queue request within 3 s; is "
        "start-re-manager running there?"
    )
    assert "Traceback" not in refused.stderr
    inbox = Inbox(inbox_path)
    try:
        entry = inbox.get(waiting["uid"])
        assert entry is not None
        assert (entry.state, entry.state_reason, entry.decisions) == ("pending", "", [])
        # what the agent is told of it (sent or still to send): no approved, no failed
        told = [json.loads(r["body"]) for r in inbox.db.execute("SELECT body FROM feedback")]
        assert [b["state"] for b in told if b["uid"] == entry.uid] == ["pending"]
    finally:
        inbox.close()
