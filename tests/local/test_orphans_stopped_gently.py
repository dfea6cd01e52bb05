"""The tasks a supervisor killed outright left running are stopped by the next start as a
supervisor stops its tasks: their KillSignal first, with their KillTimeout to finish (a worker
publishes its final status record then), SIGKILL only for a task still there after it, and the
start says which had to be killed. Before, each was killed at once: a worker's work since its
last status record was in no count (QA s46 P6)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from local_jobs import NS, alive, group, job, pipeline, read_state, task, wait_for, write_job

#: ends on SIGTERM after saying so in a file, as a worker publishes its final record
POLITE = """
import pathlib, signal, sys, time
def bye(*_):
    pathlib.Path({out!r}).write_text("final record")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
while True:
    time.sleep(0.05)
"""
#: ignores SIGTERM: only SIGKILL ends it
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(0.05)
"""


def test_the_next_start_lets_orphans_finish_and_kills_only_those_that_do_not(
    tmp_path: Path,
) -> None:
    said = tmp_path / "polite.out"
    payload = job(
        "gentle",
        group("polite", task("polite", POLITE.format(out=str(said)), KillTimeout=20 * NS)),
        group("stubborn", task("stubborn", STUBBORN, KillTimeout=1 * NS)),
        type="service",
    )
    job_file = write_job(tmp_path / "gentle.json", payload)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "gentle"
    pids: list[int] = []
    try:
        started = pipeline("run", str(job_file), "--detach", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        wait_for(
            lambda: len([u for u in (read_state(run_dir) or {}).get("units", []) if u["pid"]]) == 2,
            timeout=30,
            what="both tasks to run",
        )
        state = read_state(run_dir)
        supervisor = int(state["pid"])
        units = {u["group"]: int(u["pid"]) for u in state["units"]}
        pids = list(units.values())
        os.kill(supervisor, signal.SIGKILL)
        wait_for(lambda: not alive(supervisor), timeout=30, what="the supervisor to die")
        assert all(alive(p) for p in pids)

        again = pipeline("run", str(job_file), "--detach", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert not any(alive(p) for p in pids)
        # the polite task was given its time, and used it
        assert said.read_text() == "final record"
        line = next(x for x in again.stdout.splitlines() if x.startswith("stopped 2 tasks"))
        assert re.fullmatch(
            r"stopped 2 tasks left running by the lost run of job gentle: the orphaned workers "
            rf"\(pids \d+, \d+\), whose supervisor \(pid {supervisor}\) is gone; "
            rf"{units['stubborn']} did not stop within its KillTimeout and had to be killed",
            line,
        ), line
        assert pipeline("stop", str(job_file), cwd=tmp_path).returncode == 0
    finally:
        # a failed assertion may leave the lost run's tasks, or the second run's, running: its
        # supervisor is killed first, so that it starts no task again
        state = read_state(run_dir) or {}
        if state.get("pid") and alive(state["pid"]):
            os.kill(state["pid"], signal.SIGKILL)
        for pid in pids + [int(u["pid"]) for u in state.get("units", []) if u.get("pid")]:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
