"""A run whose state file is gone is not "running" for ever on the viewer: its `run` event says
what `pipeline status` says of it, that no supervisor runs it and `pipeline stop` ends it.

The run store still records the run as running (its supervisor, killed, could not end it), and
its run directory holds no state file of the session: deleted with the supervisor gone, or never
written by a supervisor that died first. `pipeline status` tells it from the run's record; the
viewer had nothing but the record's "running" to show. Real commands: a detached watch-mode run,
its supervisor and tasks killed with SIGKILL and its state file deleted, `pipeline status`, and a
real `pipeline view` on loopback whose `/events` is read as `curl -sN` reads it, and its page.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import wait_for
from test_viewer_run_end import (
    PIPELINE,
    WATCH_PIPELINE,
    _kill,
    _state,
    environment,
    events_until,
    pipeline,
)
from viewer_support import start_view, stop_view


@pytest.fixture(scope="module")
def stateless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A detached run watched by `pipeline view`, then its supervisor and tasks killed and its
    state file deleted: the viewer's address, its events once they say lost (or after 90 s),
    and what `pipeline status` said of the run then."""
    work = tmp_path_factory.mktemp("stateless")
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
            for pid in [state["pid"], *(u["pid"] for u in state["units"])]:
                _kill(int(pid))
            (Path(state["run_dir"]) / "state.json").unlink()
            # the path as the viewer was given it: the sentence names the file to stop
            status = subprocess.run(
                [PIPELINE, "status", str(file)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            events = events_until(url, lambda e: e.get("run", {}).get("state") == "lost", 90)
            yield {"url": url, "events": events, "status": status}
        finally:
            assert "Traceback" not in stop_view(view)
    finally:
        subprocess.run([PIPELINE, "stop", file.name], cwd=work, env=env, timeout=120)


def test_a_run_without_its_state_file_shows_what_status_says(stateless):
    status, events = stateless["status"], stateless["events"]
    assert status.returncode == 1, status.stdout + status.stderr
    told = status.stderr.strip().removeprefix("error: ")
    assert "no supervisor runs it" in told
    run = events.get("run", {})
    # not "running" for ever: lost, as a run whose supervisor is gone, in status's words
    assert (run.get("id"), run.get("state"), run.get("ended")) == ("r1", "lost", False)
    assert run["message"] == told


def test_the_page_of_a_run_without_its_state_file_says_so(stateless, page):
    page.goto(stateless["url"])
    wait_for(page, lambda: page.text_content("#conn") == "run lost", "the run lost")
    told = stateless["status"].stderr.strip().removeprefix("error: ")
    assert told in page.text_content("#run-note")
