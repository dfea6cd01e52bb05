"""Restarts are counted per session of a deployment, as the restart budget is: after
`pipeline stop FILE` and `pipeline start FILE` (a new session of the run), `pipeline status`
shows the restarts of this session, and a unit has the full `restart.attempts` again. Before,
the count went on from the stopped session (a unit restarted twice then showed 2 restarts
before any of this session's, 3 after its first), which read as a budget nearly used up.
On a real one-node Slurm: the sink's job killed with `scancel --signal=KILL`."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from slurm_support import executor, run_pipeline, wait_until, watching_file

from asapo_pipelines.sdk.executors import pid_alive

SLURM = "partition: debug, poll_interval: 0.5, restart: {attempts: 2, interval: 600, delay: 1}"


def _sink(file, env):
    done = run_pipeline("status", str(file), "--json", env=env)
    shown = json.loads(done.stdout)
    return next(i for i in shown["instances"] if i["unit"] == "sink")


def _kill_sink(file, env, restarts: int) -> dict:
    """Kill the sink's running job; its state once the watcher has handled the death: running
    again with `restarts` restarts, or failed."""
    job = _sink(file, env)["task_id"]
    subprocess.run(["scancel", "--signal=KILL", job], env=env, check=True, timeout=30)

    def handled():
        sink = _sink(file, env)
        if sink["task_id"] == job and sink["state"] != "failed":
            return None
        return sink if sink["state"] in ("running", "failed") else None

    sink = wait_until(f"the sink's job {job} to be handled", handled, timeout=60, every=0.5)
    assert sink["restarts"] == restarts, sink
    return sink


def _running(file, env):
    return _sink(file, env)["state"] == "running"


def test_a_new_session_shows_its_own_restarts_and_has_the_full_budget(slurm, workdir):
    file = watching_file(workdir, "persession", slurm=SLURM)
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    assert run_pipeline("deploy", str(file), env=env).returncode == 0
    wait_until("the sink to run", lambda: _running(file, env), timeout=60)
    for restarts in (1, 2):  # the whole budget of the first session
        assert _kill_sink(file, env, restarts)["state"] == "running"

    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    started = run_pipeline("start", str(file), env=env)
    assert started.returncode == 0, started.stderr
    wait_until("the sink to run again", lambda: _running(file, env), timeout=60)
    sink = _sink(file, env)
    assert sink["restarts"] == 0, sink

    # this session's budget is whole: two restarts, then the third death fails the unit
    for restarts in (1, 2):
        assert _kill_sink(file, env, restarts)["state"] == "running"
    sink = _kill_sink(file, env, 2)
    assert sink["state"] == "failed", sink
    assert "exceeded the 2 restart attempts" in sink["detail"], sink


def test_a_watcher_started_again_in_the_same_session_keeps_its_restart_budget(slurm, workdir):
    """Within one session the budget is not renewed by a new job watcher: one killed (its
    host rebooted) and started again by `pipeline start` goes on in the session, with the
    restarts it made. Before, the new watcher began with an empty count, so every watcher
    death gave each unit `restart.attempts` more (shown: 3 restarts, still `running`, beside
    `attempts: 2`)."""
    file = watching_file(workdir, "samesession", slurm=SLURM)
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    assert run_pipeline("deploy", str(file), env=env).returncode == 0
    wait_until("the sink to run", lambda: _running(file, env), timeout=60)
    for restarts in (1, 2):  # the whole budget of the session
        assert _kill_sink(file, env, restarts)["state"] == "running"

    state = json.loads(next(workdir.rglob("state.json")).read_text())
    os.kill(state["watcher_pid"], signal.SIGKILL)
    wait_until("the watcher to die", lambda: not pid_alive(state["watcher_pid"]), timeout=30)
    started = run_pipeline("start", str(file), env=env)
    assert started.returncode == 0, started.stderr
    assert "goes on" in started.stdout + started.stderr, started.stdout + started.stderr

    sink = _kill_sink(file, env, 2)
    assert sink["state"] == "failed", sink
    assert "exceeded the 2 restart attempts" in sink["detail"], sink
