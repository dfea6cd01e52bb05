"""End to end: the P65 example ending in `bluesky.queue` (approve mode), run for real with
`pipeline run` on the bundled beamline data, then the inbox through `pipeline suggestions`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bluesky_services import free_port

from asapo_pipelines_bluesky.inbox import Inbox

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "p65-xas-bluesky.pipeline.yaml"
PIPELINE = [str(Path(sys.executable).parent / "pipeline")]

pytest.importorskip("asapo_pipelines_xas", reason="the P65 units (plugins/xas) are not installed")


def pipeline(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PIPELINE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


@pytest.fixture
def p65(tmp_path: Path, queue_server) -> Path:
    """The example beside a copy of its data, pointed at the test's queue server."""
    (tmp_path / "data").mkdir()
    for scan in sorted((REPO / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, tmp_path / "data")
    text = EXAMPLE.read_text().replace("tcp://localhost:60615", queue_server.control)
    path = tmp_path / EXAMPLE.name
    path.write_text(text)
    return path


def test_p65_suggestion_waits_for_approval_then_runs_with_its_metadata(p65, queue_server):
    run = pipeline("run", p65.name, cwd=p65.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    # approve mode: the agent's suggestion is in the inbox, nothing on the queue server
    assert queue_server.suggestion_items() == {"queue": [], "running": [], "history": []}

    listed = pipeline("suggestions", p65.name, "--json", cwd=p65.parent)
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    # the agent asks for more scans after the first repeat (how often depends on its rules)
    more = [e for e in entries if e["action"] == "more_scans"]
    assert more
    assert {e["state"] for e in more} == {"pending"}
    pending = more[0]
    assert pending["item"]["name"] == "xas_scan"
    assert pending["item"]["kwargs"]["sample"] == "20K_GOE_Fe_K_240"
    assert pending["numbers"]["epsilon_k"] > pending["numbers"]["target_noise"]
    assert 0 < pending["confidence"] <= 1

    table = pipeline("suggestions", p65.name, cwd=p65.parent)
    assert pending["uid"][:12] in table.stdout
    assert "pending" in table.stdout

    approved = pipeline("suggestions", p65.name, "approve", pending["uid"][:8], cwd=p65.parent)
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"suggestion {pending['uid'][:12]} approved and submitted"

    api = queue_server.api()
    try:
        api.queue_start()
    finally:
        api.close()
    item = queue_server.wait_history(pending["uid"])
    assert item["result"]["exit_status"] == "completed"
    assert item["user"] == "p65-agent"
    assert item["meta"]["suggestion"]["agent"] == "xas.convergence-agent"
    assert item["meta"]["suggestion"]["reason"] == pending["reason"]

    # approving again queues nothing twice; the listing follows the item to completed
    again = pipeline("suggestions", p65.name, "approve", pending["uid"], cwd=p65.parent)
    assert again.returncode == 1
    assert again.stderr.strip().endswith(
        "is completed; only pending, held or failed suggestions can be approved"
    )
    entries = json.loads(pipeline("suggestions", p65.name, "--json", cwd=p65.parent).stdout)
    done = next(e for e in entries if e["uid"] == pending["uid"])
    assert done["state"] == "completed"
    assert [d["decision"] for d in done["decisions"]] == ["approve"]
    assert len(queue_server.suggestion_items()["history"]) == 1


def test_inbox_commands_reject_and_bad_ids(p65, queue_server, run_unit, make_suggestion):
    """Reject never queues; an unknown id, a reject without reason and a file without bridge
    each get one sentence and a non-zero exit."""
    from asapo_pipelines_bluesky.params import QueueParams

    inbox = p65.parent / QueueParams().inbox
    body = make_suggestion()
    run_unit(
        "bluesky.queue",
        [body],
        params={"control_address": queue_server.control, "inbox": str(inbox)},
    )
    cwd = p65.parent

    no_reason = pipeline("suggestions", p65.name, "reject", body["uid"], cwd=cwd)
    assert (no_reason.returncode, no_reason.stderr.strip()) == (
        1,
        "error: give the reason for rejecting with --reason TEXT",
    )
    rejected = pipeline(
        "suggestions", p65.name, "reject", body["uid"], "--reason", "beam dump", cwd=cwd
    )
    assert rejected.returncode == 0, rejected.stderr
    entries = json.loads(pipeline("suggestions", p65.name, "--json", cwd=cwd).stdout)
    assert entries[0]["state"] == "rejected"
    assert entries[0]["state_reason"] == "beam dump"
    assert entries[0]["decisions"][0]["reason"] == "beam dump"
    late = pipeline("suggestions", p65.name, "approve", body["uid"], cwd=cwd)
    assert late.returncode == 1
    assert "is rejected (beam dump)" in late.stderr
    assert queue_server.suggestion_items()["queue"] == []

    unknown = pipeline("suggestions", p65.name, "approve", "0123abcd", cwd=cwd)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"error: no suggestion 0123abcd in the inbox {inbox.resolve()}; "
        "`pipeline suggestions FILE` lists their ids"
    )
    assert "Traceback" not in unknown.stderr

    # a core-only example: it validates wherever the core is installed (this plugin's own
    # session has no NeXus plugin for the P65 example's writer)
    plain = REPO / "examples" / "files-to-jsonl.pipeline.yaml"
    nobridge = pipeline("suggestions", str(plain), cwd=cwd)
    assert nobridge.returncode == 2
    assert nobridge.stderr.strip() == (
        f"error: pipeline file {plain} has no bluesky.queue unit, so it has no suggestion inbox"
    )


def test_p65_in_auto_mode_runs_each_suggestion_once(p65, queue_server):
    text = p65.read_text()
    p65.write_text(
        text.replace("mode: approve ", "mode: auto    ").replace(
            "      user: p65-agent\n", "      user: p65-agent\n      start_queue: true\n"
        )
    )
    run = pipeline("run", p65.name, cwd=p65.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    entries = json.loads(pipeline("suggestions", p65.name, "--json", cwd=p65.parent).stdout)
    more = [e for e in entries if e["action"] == "more_scans"]
    assert more
    for entry in more:
        item = queue_server.wait_history(entry["uid"])
        assert item["result"]["exit_status"] == "completed"
        assert item["kwargs"]["repeats"] == entry["scans"]
        assert len(item["result"]["run_uids"]) == entry["scans"]
        assert item["meta"]["suggestion"]["confidence"] == entry["confidence"]
    history = queue_server.suggestion_items()["history"]
    assert sorted(i["meta"]["suggestion"]["uid"] for i in history) == sorted(e["uid"] for e in more)
    # what the bridge sent the agent on `status` (marked sent once the worker flushed it); the
    # states the listing found since (completed) wait for the bridge's next turn
    inbox = Inbox(p65.parent / ".pipeline-data" / "suggestions.sqlite")
    rows = inbox.db.execute("SELECT body, sent FROM feedback").fetchall()
    sent = {
        (json.loads(r["body"])["uid"], json.loads(r["body"])["state"]) for r in rows if r["sent"]
    }
    assert {(e["uid"], "submitted") for e in more} <= sent
    waiting = {json.loads(r["body"])["state"] for r in rows if not r["sent"]}
    assert waiting <= {"running", "completed"}


def test_scans_per_run_counts_the_scans_of_this_run_only(p65, queue_server):
    """A new run (`--fresh`) gets its own scans_per_run; the earlier run's scans stay counted
    in that run only. Counted on the real queue server: what reached it, per run."""
    p65.write_text(
        p65.read_text()
        .replace("mode: approve ", "mode: auto    ")
        .replace("scans_per_run: 30", "scans_per_run: 1")
    )
    for args in (("run",), ("run", "--fresh")):
        run = pipeline(*args, p65.name, cwd=p65.parent)
        assert run.returncode == 0, run.stderr[-3000:]
    entries = json.loads(pipeline("suggestions", p65.name, "--json", cwd=p65.parent).stdout)
    queued = {i["meta"]["suggestion"]["uid"] for i in queue_server.suggestion_items()["queue"]}
    # one scan of each run reached the queue server
    assert len(queued) == 2, [(e["state"], e["state_reason"]) for e in entries]
    by_run: dict[str, list[dict[str, object]]] = {}
    for entry in entries:
        if entry["action"] == "more_scans":
            by_run.setdefault(entry["run"], []).append(entry)
    assert sorted(by_run) == ["r1", "r2"]
    for run_id, more in by_run.items():
        # each run asks for more than its budget: the first scan is queued, the rest held
        assert len(more) >= 2, more
        submitted = [e for e in more if e["state"] == "submitted"]
        assert [e["scans"] for e in submitted] == [1], (run_id, more)
        assert submitted[0]["uid"] in queued
        for held in (e for e in more if e["state"] != "submitted"):
            assert held["state"] == "held"
            assert held["state_reason"] == (
                f"over budget: 1 scan already queued in run {run_id}, {held['scans']} more "
                "would exceed scans_per_run 1"
            )

    # the listing says each suggestion's run: a column of the table, a word of the block
    wide = pipeline("suggestions", p65.name, cwd=p65.parent, env={"COLUMNS": "200"})
    narrow = pipeline("suggestions", p65.name, cwd=p65.parent, env={"COLUMNS": "80"})
    assert re.search(r"┃ run\s+┃ id\s+┃ state", wide.stdout), wide.stdout
    for entry in entries:
        short = str(entry["uid"])[:12]
        (row,) = [line for line in wide.stdout.splitlines() if f" {short} " in line]
        assert re.match(rf"│ {entry['run']}\s+│ {short} │", row), row
        lines = narrow.stdout.splitlines()
        head = next(n for n, line in enumerate(lines) if line.startswith(f"{short}  "))
        assert lines[head + 1].startswith(f"    run {entry['run']}, scans {entry['scans']}, ")


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of `needle` in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(f"{needle!r} not in the file")


def test_validate_online_checks_plan_names_and_arguments_at_their_place(p65, queue_server):
    text = p65.read_text().replace(
        "plan_name: xas_scan}", "plan_name: xas_scna, plan_kwargs: {points: 5, sampel: x}}"
    )
    p65.write_text(text)
    offline = pipeline("validate", p65.name, cwd=p65.parent)
    assert offline.returncode == 0, offline.stdout  # nothing to see without the server

    wrong = pipeline("validate", "--online", p65.name, cwd=p65.parent)
    assert wrong.returncode == 1
    line, column = _position(text, "xas_scna")
    assert wrong.stdout.splitlines() == [
        f"{p65.name}:{line}:{column}: error P501 the queue server at {queue_server.control} "
        "does not allow plan xas_scna (it allows scan, xas_scan); did you mean xas_scan?"
    ]

    p65.write_text(text.replace("xas_scna", "xas_scan"))
    argument = pipeline("validate", "--online", p65.name, cwd=p65.parent)
    assert argument.returncode == 1
    line, column = _position(text, "x}}")
    assert argument.stdout.splitlines() == [
        f"{p65.name}:{line}:{column}: error P501 plan xas_scan on the queue server at "
        f"{queue_server.control} takes no argument sampel (it takes edge, element, md, mode, "
        "points, repeats, sample)"
    ]

    port = free_port()
    p65.write_text(text.replace(queue_server.control, f"tcp://127.0.0.1:{port}"))
    down = pipeline("validate", "--online", p65.name, cwd=p65.parent)
    assert down.returncode == 0  # a warning: the file may be right, the server is not there
    assert f"warning P502 plans not checked: the queue server at tcp://127.0.0.1:{port} did " in (
        down.stdout
    )


def test_status_counts_the_suggestions_while_the_pipeline_runs(p65, queue_server):
    """The bridge counted its inbox's states only at shutdown: for as long as the pipeline ran,
    `pipeline status` said `suggestions: ` (blank) above an inbox holding them."""
    watched = 'pattern: "20K_GOE_*.xdi"\n      watch: true\n      settle_seconds: 0.2'
    p65.write_text(p65.read_text().replace('pattern: "20K_GOE_*.xdi"', watched))
    started = pipeline("run", p65.name, "--detach", cwd=p65.parent)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        bridge = _bridge_once_it_committed(p65)
        assert bridge["state"] == "running"  # a watching source: the pipeline goes on
        # approve mode: each suggestion the bridge took waits for a person in the inbox
        pending = bridge["counters"]["processed"]
        inbox = Inbox(p65.parent / ".pipeline-data" / "suggestions.sqlite")
        assert [e.state for e in inbox.entries("queue")][:pending] == ["pending"] * pending
        assert bridge["summary"] == {"mode": "approve", "suggestions": {"pending": pending}}
        table = pipeline("status", p65.name, cwd=p65.parent)
        assert re.search(r"^  suggestions: pending \d+$", table.stdout, re.M), table.stdout
    finally:
        stopped = pipeline("stop", p65.name, cwd=p65.parent)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def _bridge_once_it_committed(p65: Path) -> dict:
    """The bridge's unit in `pipeline status --json` once it acknowledged every suggestion the
    inbox holds (its summary goes with the status record sent at that commit)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        shown = pipeline("status", p65.name, "--json", cwd=p65.parent)
        assert shown.returncode == 0, shown.stderr
        [bridge] = [u for u in json.loads(shown.stdout)["units"] if u["task"] == "queue"]
        counters = bridge.get("counters") or {}
        if counters.get("processed") and counters["processed"] == counters["received"]:
            return bridge
        time.sleep(1)
    raise AssertionError(f"the bridge processed no suggestion: {shown.stdout}")
