"""What the `pipeline` command says about a live Slurm deployment, on a real Slurm: `pipeline run`
of the deployed file is refused (a second copy would write every result twice), and `status`
of a worker the watcher is about to resubmit shows `restarting` with the watcher's reason, and
`start` of a deployment whose watcher died goes on in the run's session, so that the run counts
every input once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from slurm_support import run_pipeline, runs_of, squeue, wait_until, watching_file


def _watching(workdir: Path, name: str, extra: str = "") -> Path:
    return watching_file(
        workdir, name, slurm=f"partition: debug, poll_interval: 0.5{extra}", first_file=True
    )


def test_pipeline_run_of_a_file_deployed_on_slurm_is_refused_before_anything_is_recorded(
    slurm, workdir
):
    file = _watching(workdir, "dup")
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), env=env, cwd=workdir)
    assert deployed.returncode == 0, deployed.stderr
    second = run_pipeline("run", str(file), "--detach", env=env, cwd=workdir)
    try:
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stderr.startswith(
            "error: pipeline dup is deployed on Slurm and still runs"
        ), second.stderr
        assert f"stop the deployment first with `pipeline stop {file}`" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert "resuming" not in second.stdout + second.stderr
        (run,) = runs_of(file, env)
        assert (run["state"], run["sessions"]) == ("running", 1)
    finally:
        if second.returncode == 0:  # the second copy this guards against: stop it too
            run_pipeline("stop", str(file), "--executor", "local", env=env, cwd=workdir)
        stopped = run_pipeline("stop", str(file), env=env, cwd=workdir)
    assert stopped.returncode == 0, stopped.stderr


def test_status_of_a_killed_worker_awaiting_its_restart_shows_restarting_with_why(slurm, workdir):
    file = _watching(workdir, "waiting", extra=", restart: {delay: 30}")
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), env=env, cwd=workdir)
    assert deployed.returncode == 0, deployed.stderr
    try:

        def sink(status: dict) -> dict:
            return next(i for i in status["instances"] if i["unit"] == "sink")

        def status() -> dict:
            done = run_pipeline("status", str(file), "--json", env=env, cwd=workdir)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        job = wait_until("the sink to run", lambda: sink(status())["state"] == "running", 30)
        assert job
        killed = sink(status())["task_id"]
        subprocess.run(["scancel", "--signal=KILL", killed], env=env, check=True, timeout=30)

        # the watcher saw the job end and waits the policy's delay (30 s) to resubmit it
        state_file = next(workdir.rglob("state.json"))

        def recorded_restarting() -> bool:
            return json.loads(state_file.read_text())["instances"]["sink-0"]["state"] == (
                "restarting"
            )

        wait_until("the watcher to plan the restart", recorded_restarting, 20)
        shown = sink(status())
        assert shown["task_id"] == killed
        assert shown["state"] == "restarting", shown
        assert f"job {killed} ended CANCELLED" in shown["detail"]
        assert "restarting" in shown["detail"]
        table = run_pipeline("status", str(file), env=env, cwd=workdir)
        assert table.returncode == 0, table.stderr
        assert "None" not in table.stdout
        assert "restarting" in table.stdout
    finally:
        stopped = run_pipeline("stop", str(file), env=env, cwd=workdir)
    assert stopped.returncode == 0, stopped.stderr


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_start_of_an_unwatched_deployment_goes_on_in_its_session_and_counts_every_input(
    slurm, workdir
):
    file = _watching(workdir, "unwatched", extra=", restart: {delay: 1}")
    env = slurm.env
    out = workdir / "results" / "out.jsonl"
    deployed = run_pipeline("deploy", str(file), env=env, cwd=workdir)
    assert deployed.returncode == 0, deployed.stderr
    try:
        wait_until("the first file at the sink", lambda: _lines(out) == 1, 30)
        state_file = next(workdir.rglob("state.json"))
        state = json.loads(state_file.read_text())
        # the watcher dies (its host rebooted, an admin killed it): nothing restarts workers
        os.kill(state["watcher_pid"], signal.SIGKILL)
        sink_job = state["instances"]["sink-0"]["job_id"]
        subprocess.run(["scancel", "--signal=KILL", sink_job], env=env, check=True, timeout=30)
        wait_until(
            "the sink's job to end",
            lambda: squeue([sink_job], env).get(sink_job) not in ("RUNNING", "COMPLETING"),
            30,
        )
        (workdir / "files" / "b.txt").write_text("second\n")

        started = run_pipeline("start", str(file), env=env, cwd=workdir)
        assert started.returncode == 0, started.stderr
        wait_until("the second file at the sink", lambda: _lines(out) == 2, 40)
        status = run_pipeline("status", str(file), "--json", env=env, cwd=workdir)
    finally:
        stopped = run_pipeline("stop", str(file), env=env, cwd=workdir)
    assert stopped.returncode == 0, stopped.stderr
    # the sink's job was lost and replaced: a restart, as the watcher would have counted it
    restarts = {i["unit"]: i["restarts"] for i in json.loads(status.stdout)["instances"]}
    assert restarts == {"files": 0, "sink": 1}, status.stdout
    (run,) = runs_of(file, env)
    assert run["counts"]["sink"]["processed"] == 2
    assert run["counts"]["files"]["outputs"] == 2
    assert (run["state"], run["sessions"]) == ("stopped", 1)
    assert "run r1 of pipeline unwatched goes on" in started.stdout + started.stderr
