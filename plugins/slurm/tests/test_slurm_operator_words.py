"""What an operator reads of a Slurm deployment, on a real Slurm, where an outside tester read
nothing or something misleading: `pipeline logs` printed the (empty) stdout only; a cancelled
job "ended CANCELLED (exit code 0)"; `unwatched` was not explained; after the `pipeline:` name
was edited, `status` and `stop` advised `pipeline deploy`, which deployed the file twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from slurm_support import run_pipeline, squeue, wait_until, watching_file

from asapo_pipelines_slurm.watch import ALIVE


def _deployed(workdir: Path, name: str, env: dict[str, str]) -> Path:
    file = watching_file(workdir, name, first_file=True)
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr
    return file


def _state(workdir: Path, name: str) -> dict:
    return json.loads((workdir / ".pipeline-slurm" / name / "state.json").read_text())


def _stopped(file: Path, env: dict[str, str]) -> None:
    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr


def test_logs_show_both_streams_and_say_when_the_files_are_gone(slurm, workdir):
    env = slurm.env
    file = _deployed(workdir, "logged", env)
    try:
        out = workdir / "results" / "out.jsonl"
        wait_until("the first file at the sink", out.exists, timeout=60)
        job = _state(workdir, "logged")["instances"]["sink-0"]["job_id"]
        shown = run_pipeline("logs", str(file), "sink", env=env)
        assert shown.returncode == 0, shown.stderr
        # the job script's first line and the worker's log, both on stderr in the job
        assert f"asapo-pipelines: Slurm job {job} on " in shown.stdout, shown
        only = run_pipeline("logs", str(file), "sink", "--stdout", env=env)
        assert (only.returncode, only.stdout, only.stderr) == (0, "", ""), only
    finally:
        _stopped(file, env)

    shutil.rmtree(workdir / ".pipeline-slurm" / "logged" / "logs")  # a scratch cleaner
    gone = run_pipeline("logs", str(file), "sink", "--stderr", env=env)
    assert gone.returncode != 0, gone
    logs = workdir / ".pipeline-slurm" / "logged" / "logs"
    assert gone.stderr.strip() == (
        f"error: unit sink replica 0 has no log file {logs}/sink-0.err (job {job} has not "
        "started yet, or its logs were removed)"
    ), gone.stderr


def _worker_pid(script_arg: str, unit: str) -> int | None:
    """The pid of the worker process of `unit` that runs the deployed copy `script_arg`."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        if "worker" in words and script_arg in words and unit in words:
            return int(proc.name)
    return None


def _ended_lines(log: Path, job: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if f"job {job} ended" in line]


def test_a_job_ended_by_a_signal_is_not_said_to_exit_0(slurm, workdir):
    env = slurm.env
    file = _deployed(workdir, "cancelled", env)
    root = workdir / ".pipeline-slurm" / "cancelled"
    log = root / "watcher.log"
    try:
        job = _state(workdir, "cancelled")["instances"]["sink-0"]["job_id"]
        wait_until("the sink's first line", (workdir / "results/out.jsonl").exists, 60)
        subprocess.run(["scancel", job], env=env, check=True, timeout=30)
        said = wait_until("the watcher to see the job end", lambda: _ended_lines(log, job), 60)
        # Slurm says 0:15 of a job whose worker SIGTERM ended, 0:0 of one that drained first
        assert f"job {job} ended CANCELLED; resubmitting" in said[0] or (
            f"job {job} ended CANCELLED, killed by signal 15; resubmitting" in said[0]
        ), said

        def resubmitted() -> str | None:
            now = _state(workdir, "cancelled")["instances"]["sink-0"]
            return now["job_id"] if now["job_id"] != job and now["state"] == "running" else None

        again = wait_until("the sink's next job", resubmitted, 60)
        pid = wait_until("its worker", lambda: _worker_pid(str(root / "pipeline.yaml"), "sink"), 60)
        os.kill(pid, signal.SIGKILL)  # the out-of-memory killer, say
        said = wait_until("the watcher to see it end", lambda: _ended_lines(log, again), 60)
        assert f"job {again} ended FAILED, killed by signal 9; resubmitting" in said[0], said
    finally:
        _stopped(file, env)


def test_status_says_what_unwatched_means(slurm, workdir):
    env = slurm.env
    file = _deployed(workdir, "orphan", env)
    try:
        pid = _state(workdir, "orphan")["watcher_pid"]
        os.kill(pid, signal.SIGKILL)  # the login node rebooted
        wait_until("the watcher to be gone", lambda: not Path(f"/proc/{pid}").exists(), 10)
        shown = run_pipeline("status", str(file), env=env)
        assert shown.returncode == 0, shown.stderr
        assert "slurm orphan: unwatched" in shown.stdout, shown.stdout
        assert (
            f"warning: the job watcher of this deployment is not running (pid {pid}): no job "
            f"is restarted; `pipeline start {file}` starts it again"
        ) in shown.stderr, shown.stderr
    finally:
        _stopped(file, env)


def test_a_renamed_pipeline_is_found_deployed_under_its_old_name(slurm, workdir):
    env = slurm.env
    file = _deployed(workdir, "named", env)
    jobs = [i["job_id"] for i in _state(workdir, "named")["instances"].values()]
    file.write_text(file.read_text().replace("pipeline: named", "pipeline: renamed"))
    root = workdir / ".pipeline-slurm" / "named"
    try:
        for command in ("status", "stop"):
            said = run_pipeline(command, str(file), env=env)
            assert said.returncode != 0, said
            assert said.stderr.strip() == (
                f"error: pipeline renamed is not deployed on Slurm, but {file} is, as pipeline "
                f"named (state in {root}), the name it gave before its `pipeline:` was edited: "
                "put `pipeline: named` back in place of `pipeline: renamed` to see or stop "
                "that deployment"
            ), said.stderr
        deployed = run_pipeline("deploy", str(file), env=env)
        assert deployed.returncode != 0, deployed
        assert deployed.stderr.strip() == (
            f"error: {file} is still deployed on Slurm as pipeline named (state in {root}), "
            "the name it gave before its `pipeline:` was edited: put `pipeline: named` back "
            "in place of `pipeline: renamed` and stop that deployment first"
        ), deployed.stderr
        assert not (workdir / ".pipeline-slurm" / "renamed").exists()
        assert set(squeue(jobs, env).values()) <= ALIVE  # the first deployment runs on
    finally:
        file.write_text(file.read_text().replace("pipeline: renamed", "pipeline: named"))
        _stopped(file, env)


def test_a_stop_while_the_transport_is_down_says_to_stop_again_which_records_its_time(
    slurm, workdir
):
    import time

    import pytest

    testing = pytest.importorskip("asapo_pipelines_redis.testing")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    env = slurm.env
    server = testing.RedisServer(workdir / "redis").start()
    try:
        file = watching_file(workdir, "unreached", first_file=True)
        file.write_text(
            file.read_text() + f'transport: {{redis: {{url: "{server.url}", key_prefix: unreached, '
            "payload_dir: payloads}}\n"
        )
        deployed = run_pipeline("deploy", str(file), env=env)
        assert deployed.returncode == 0, deployed.stderr
        wait_until("the first file at the sink", (workdir / "results/out.jsonl").exists, 60)
        server.stop()  # the transport is down while the deployment is stopped
        stopped = run_pipeline("stop", str(file), env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert (
            f"; run `pipeline stop {file}` again once it can be reached, to record the end of "
            "the run" in stopped.stderr
        ), stopped.stderr
        jobs_ended = time.time()
        time.sleep(2)
        server.start()
        again = run_pipeline("stop", str(file), env=env)
        assert again.returncode == 0, again.stderr
        listed = run_pipeline("runs", str(file), "--json", env=env)
        (run,) = json.loads(listed.stdout)["runs"]
        assert run["state"] == "stopped", run
        # when the jobs ended (the first stop), not when the second stop recorded it
        assert float(run["ended"]) <= jobs_ended, (run["ended"], jobs_ended)
    finally:
        server.stop()
