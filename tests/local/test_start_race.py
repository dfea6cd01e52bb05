"""Two operators start the same pipeline at the same moment, detached: one start runs it, the
other is refused having recorded nothing. The refused start used to write into the live run's
record (a session of its own, the live session ended `lost`, or a failed run r1 that never ran
with the real run as r2), and `status` then showed no counters for the live run. Real
`pipeline run --detach` processes racing, a real embedded store, real workers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_which_run import NO_NOMAD, runs_of, write_pipeline

from helpers import CACHE_DIR, PIPELINE, alive, run_pipeline, wait_for

#: how many times the two starts race (each time in a fresh folder); the old code lost most
TRIES = 5


def _start_two_at_once(file: Path) -> list[subprocess.CompletedProcess[str]]:
    """Two `pipeline run FILE --detach --json` started together; both waited for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(NO_NOMAD, ASAPO_PIPELINES_CACHE_DIR=CACHE_DIR, COLUMNS="200")
    argv = [PIPELINE, "run", str(file), "--detach", "--json"]
    procs = [
        subprocess.Popen(
            argv, cwd=file.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode()))
    return done


def _loser_said(file: Path, done: list[subprocess.CompletedProcess[str]]) -> None:
    """One start ran it (exit 0), the other was refused in one sentence (exit 1) naming the
    command that stops the run, and the winner's supervisor or that it is being started."""
    said = "".join(d.stdout + d.stderr for d in done)
    won = next(d for d in done if d.returncode == 0)
    lost = next(d for d in done if d.returncode == 1)
    assert lost.stdout == "", said
    lines = lost.stderr.strip().splitlines()
    assert len(lines) == 1, said
    assert lines[0].startswith("error: job fe is already running locally"), said
    assert lines[0].endswith(f"stop it first with `pipeline stop {file}`"), said
    pid = json.loads(won.stdout)["pid"]
    assert f"supervisor pid {pid}" in lines[0] or "being started" in lines[0], said


def _counted(file: Path) -> dict[str, Any]:
    """`status --json` once every unit of the live run shows its count of the new scan."""
    shown = run_pipeline("status", str(file), "--json", env=NO_NOMAD)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    status: dict[str, Any] = json.loads(shown.stdout)
    counts = [u["counters"].get("processed") for u in status["units"]]
    return status if len(counts) == 2 and all(isinstance(n, int) and n > 0 for n in counts) else {}


def _record_holds_one_live_session(file: Path, sessions: list[str], pid: int) -> None:
    """The record holds one run, r1, whose sessions are `sessions`, the earlier ones stopped
    and the last running; `status` shows the live run with its counters."""
    runs = runs_of(file)
    assert list(runs) == ["r1"], runs
    run = runs["r1"]
    assert run["state"] == "running", run
    listed = run["session_list"]
    assert [s["event"] for s in listed] == sessions, listed
    assert [s["state"] for s in listed] == ["stopped"] * (len(sessions) - 1) + ["running"], listed
    status = wait_for(lambda: _counted(file), 60, "the live run's counters")
    assert status["status"] == "running", status
    assert status["pid"] == pid, status


def _one_race(file: Path, sessions: list[str]) -> None:
    """Race two starts; check what the record, `status` and the refused start say; stop."""
    try:
        done = _start_two_at_once(file)
        codes = sorted(d.returncode for d in done)
        assert codes == [0, 1], "".join(d.stdout + d.stderr for d in done)
        state = json.loads(next(d for d in done if d.returncode == 0).stdout)
        assert state["run"] == "r1"
        _record_holds_one_live_session(file, sessions, state["pid"])
        _loser_said(file, done)
    finally:
        # the local run, whichever start left it (the old code's stop could go elsewhere)
        stopped = run_pipeline("stop", str(file), "--executor", "local", env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not alive(state["pid"])
    ended = runs_of(file)["r1"]["session_list"]
    assert [s["state"] for s in ended] == ["stopped"] * len(sessions), ended


@pytest.mark.parametrize("attempt", range(TRIES))
def test_two_starts_at_once_record_one_run_and_leave_the_live_one_alone(
    tmp_path: Path, attempt: int
) -> None:
    """First start of a new pipeline (no run directory yet), then a resume of the stopped run
    (its run directory and lock file exist): each time two starts race, one wins."""
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    (tmp_path / "data" / "first.txt").write_text(f"attempt {attempt}\n")
    _one_race(file, ["started"])
    # a scan of its own for the resumed session to count (the first is not sent again)
    (tmp_path / "data" / "second.txt").write_text(f"attempt {attempt}\n")
    _one_race(file, ["started", "resumed"])
