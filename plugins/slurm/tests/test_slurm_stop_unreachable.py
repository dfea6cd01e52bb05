"""`pipeline stop` while the Slurm controller does not answer refuses before it ends the job
watcher: the deployment runs on, watched, and the sentence says that nothing was stopped and
to stop again. Before (an operator's audit, slurmctld down during a stop), the stop ended the
watcher, cancelled nothing and said only "the Slurm controller is unreachable (...)": the jobs
ran on with nobody to restart them, the deployment `unwatched`. On a real one-node Slurm: the
stop alone is pointed at a copy of its slurm.conf naming a port nobody listens on."""

from __future__ import annotations

import json
import re

from slurm_support import executor, run_pipeline, squeue, wait_until, watching_file

from asapo_pipelines_slurm.testing import free_port


def _status(file, env):
    return json.loads(run_pipeline("status", str(file), "--json", env=env).stdout)


def test_a_stop_that_cannot_reach_the_controller_leaves_the_deployment_watched(slurm, workdir):
    file = watching_file(workdir, "stopdown", first_file=True)
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    assert run_pipeline("deploy", str(file), env=env).returncode == 0

    def running():
        shown = _status(file, env)
        states = {i["state"] for i in shown["instances"]}
        return shown if states == {"running"} else None

    jobs = [i["task_id"] for i in wait_until("the jobs to run", running, 90)["instances"]]
    elsewhere = workdir / "slurm-elsewhere.conf"
    text = slurm.conf.read_text()
    elsewhere.write_text(re.sub(r"SlurmctldPort=\d+", f"SlurmctldPort={free_port()}", text))

    done = run_pipeline("stop", str(file), env={**env, "SLURM_CONF": str(elsewhere)})
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "Traceback" not in said
    assert done.stderr.startswith("error: the Slurm controller "), said
    assert done.stderr.endswith(
        "; nothing was stopped: the deployment's jobs and its job watcher run on, so run "
        f"`pipeline stop {file}` again once Slurm answers\n"
    ), said
    shown = _status(file, env)
    assert shown["state"] == "running", shown
    assert set(squeue(jobs, env).values()) == {"RUNNING"}

    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "2 Slurm job(s) cancelled" in stopped.stdout
