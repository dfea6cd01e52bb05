"""The viewer says what `pipeline status` says about the run as a whole: a finished reprocess
has ended (its source units never ran: their messages were replayed), and a run whose
supervisor was killed is lost, with its killed unit exited. Real `pipeline` commands, a real
`pipeline view` on loopback, its `/events` read as `curl -sN` reads them, and the page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import unit_row, wait_for
from viewer_support import ROOT, read_events, start_view, stop_view

PIPELINE = str(Path(sys.executable).with_name("pipeline"))

WATCH_PIPELINE = """\
pipeline: files-watch
transport: {embedded: {path: .pipeline-data}}
units:
  files: {unit: core.files, params: {directory: data, watch: true}, outputs: {files: raw}}
  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}
"""


def environment(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(work / "cache")
    # the local executor starts `pipeline worker` tasks from PATH, as a user's shell would
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def pipeline(
    *args: str, cwd: Path, env: dict[str, str], code: int = 0
) -> subprocess.CompletedProcess[str]:
    """`pipeline ARGS`, which must end with exit code `code`."""
    done = subprocess.run(
        [PIPELINE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done


def events_until(url: str, check: Any, timeout: float = 60.0) -> dict[str, Any]:
    """The viewer's events, read again (3 s each, like the testers' curl) until `check` holds."""
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(url, 3.0)
        if check(events) or time.monotonic() > deadline:
            return events


def _state(events: dict[str, Any], unit: str) -> str | None:
    return events.get("units", {}).get(unit, {}).get("state")


def _settled(events: dict[str, Any]) -> tuple[Any, ...]:
    return events.get("run", {}).get("state"), _state(events, "sink"), _state(events, "files")


def _kill(pid: int) -> None:
    """SIGKILL, and wait until the process is gone (or a zombie of its parent)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.05)


# -- a finished reprocess --------------------------------------------------------------------
@pytest.fixture(scope="module")
def reprocessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`pipeline run`, `pipeline reprocess --from r1 --set ...` of the P65 example, then
    `pipeline view`: the viewer's address and what `pipeline status --json` says."""
    pytest.importorskip("asapo_pipelines_xas")
    pytest.importorskip("asapo_pipelines_nexus")
    work = tmp_path_factory.mktemp("reprocessed")
    example = ROOT / "examples" / "p65-xas.pipeline.yaml"
    (work / "data").mkdir()
    for scan in sorted((ROOT / "examples" / "data").glob("20K_GOE_*.xdi")):
        shutil.copy(scan, work / "data" / scan.name)
    shutil.copy(example, work / example.name)
    env = environment(work)
    pipeline("run", example.name, cwd=work, env=env)
    pipeline(
        "reprocess", example.name, "--from", "r1", "--set", "advisor.target_noise=1.5e-4",
        cwd=work, env=env,
    )  # fmt: skip
    status = json.loads(pipeline("status", example.name, "--json", cwd=work, env=env).stdout)
    view, url = start_view(work / example.name, env)
    try:
        yield {"url": url, "status": status}
    finally:
        assert "Traceback" not in stop_view(view)


def test_a_finished_reprocess_shows_its_run_ended(reprocessed):
    status = reprocessed["status"]
    assert status["status"] == "complete"
    events = events_until(reprocessed["url"], lambda e: "units" in e and "run" in e, timeout=20)
    units = events["units"]
    # the source never runs in a reprocess: not "waiting" for ever, its messages were replayed
    assert units["scans"]["state"] == "replayed"
    assert {units[u["group"]]["state"] for u in status["units"]} == {"finished"}
    # the run's recorded end, as `pipeline runs` and `pipeline status` tell it
    run = events.get("run", {})
    assert (run.get("state"), run.get("ended")) == ("complete", True)
    assert (run["id"], run["mode"], run["from_run"]) == ("r2", "reprocess", "r1")


def test_the_page_of_a_finished_reprocess_says_run_ended(reprocessed, page):
    page.goto(reprocessed["url"])
    wait_for(page, lambda: unit_row(page, "scans").get("state") == "replayed", "replayed")
    wait_for(page, lambda: page.text_content("#conn") == "run ended", "the run ended")


# -- a run whose supervisor was killed ---------------------------------------------------------
@pytest.fixture(scope="module")
def lost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A detached watch-mode run followed by `pipeline view`; then its supervisor and one
    worker killed with SIGKILL and a file fed. The viewer's address, its events once they say
    lost (or after a minute), and what `pipeline status --json` says then."""
    work = tmp_path_factory.mktemp("lost")
    file = work / "files.pipeline.yaml"
    file.write_text(WATCH_PIPELINE, encoding="utf-8")
    (work / "data").mkdir()
    env = environment(work)
    pipeline("run", "--detach", file.name, cwd=work, env=env)
    try:
        state = json.loads(pipeline("status", file.name, "--json", cwd=work, env=env).stdout)
        view, url = start_view(file, env)
        try:
            events_until(url, lambda e: _state(e, "sink") == "running")
            _kill(int(state["pid"]))  # the supervisor
            _kill(int(next(u["pid"] for u in state["units"] if u["group"] == "sink")))
            (work / "data" / "late.txt").write_text("after the supervisor\n")
            # `files` goes on: its status records keep coming (the viewer can take a record
            # published early, after a commit, as a beat, and a live unit may flicker)
            events = events_until(url, lambda e: _settled(e) == ("lost", "exited", "running"))
            # a lost run's status exits 1, for a control system polling it
            said = pipeline("status", file.name, "--json", cwd=work, env=env, code=1)
            status = json.loads(said.stdout)
            yield {"url": url, "events": events, "status": status}
        finally:
            assert "Traceback" not in stop_view(view)
    finally:
        subprocess.run([PIPELINE, "stop", file.name], cwd=work, env=env, timeout=120)


def test_a_run_whose_supervisor_was_killed_shows_lost_with_its_killed_unit_exited(lost):
    status, events = lost["status"], lost["events"]
    assert status["status"] == "lost"
    assert {u["group"]: u["state"] for u in status["units"]} == {
        "files": "running",
        "sink": "exited",
    }
    # the page tells the same as `pipeline status`, in its words
    units = events["units"]
    assert (units["sink"]["state"], units["files"]["state"]) == ("exited", "running")
    run = events.get("run", {})
    assert (run.get("state"), run.get("ended")) == ("lost", False)
    assert run["message"] == status["message"]
    assert "`pipeline stop`" in run["message"]


def test_the_page_of_a_lost_run_says_so(lost, page):
    page.goto(lost["url"])
    wait_for(page, lambda: unit_row(page, "sink").get("state") == "exited", "the sink exited")
    wait_for(page, lambda: page.text_content("#conn") == "run lost", "the run lost")
    assert lost["status"]["message"] in page.text_content("#run-note")
