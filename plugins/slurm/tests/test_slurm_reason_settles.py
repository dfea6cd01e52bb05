"""Slurm's reason for a pending job right after submission is not always its last: a job asking
for more time than its partition allows shows `PartitionConfig` (as if it asked for more CPUs
than a node has) until the scheduler has looked at it, then `PartitionTimeLimit`. `pipeline
deploy` names the reason Slurm settles on, not the first one it shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from slurm_support import PIPELINE, executor, run_pipeline, wait_until, watching_file

from asapo_pipelines_slurm.commands import never_starts
from asapo_pipelines_slurm.state import read_state

#: Deploys in a row: the first reason is seen or not depending on when the watcher first looks.
ROUNDS = 3


def test_a_job_over_the_partitions_time_limit_is_blamed_on_the_time_limit(
    slurm, workdir, short_partition
):
    file = _write(workdir, "too-long", short_partition)
    expected = f"is pending for PartitionTimeLimit: {never_starts('PartitionTimeLimit')})"
    for _ in range(ROUNDS):
        done = run_pipeline("deploy", str(file), "--wait", "60", env=slurm.env)
        assert done.returncode == 1, done.stdout
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith("error: Slurm cannot start the jobs of unit files replica 0"), (
            errors[0]
        )
        assert errors[0].count(expected) == 2, errors[0]
        assert "PartitionConfig" not in errors[0]


def test_a_reason_seen_on_one_look_only_does_not_fail_the_deploy(slurm, workdir, short_partition):
    file = _write(workdir, "lifted", short_partition)
    layout = executor(file).layout
    deploy = subprocess.Popen(
        [PIPELINE, "deploy", str(file), "--wait", "60"],
        env=_user_env(slurm.env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the watcher's first look: Slurm says the jobs cannot start in this partition
        # (or the deploy already gave up on it)
        seen = lambda: deploy.poll() is not None or _cannot_start_seen(layout)  # noqa: E731
        wait_until("the watcher's first look", seen, timeout=60)
        # an administrator lifts the partition's limit before the watcher looks again
        subprocess.run(
            ["scontrol", "update", f"PartitionName={short_partition}", "MaxTime=UNLIMITED"],
            env=slurm.env,
            check=True,
            timeout=30,
        )
        _, err = deploy.communicate(timeout=120)
    finally:
        if deploy.poll() is None:
            deploy.kill()
    try:
        assert deploy.returncode == 0, err
        assert "cannot start" not in err
        state = read_state(layout)
        assert state is not None
        assert {i["state"] for i in state["instances"].values()} == {"running"}
    finally:
        stopped = run_pipeline("stop", str(file), env=slurm.env)
    assert stopped.returncode == 0, stopped.stderr


def _write(workdir: Path, name: str, partition: str) -> Path:
    # looks every 0.5 s, often enough to see Slurm's first reason: the watcher believes a
    # never-start reason only once Slurm kept it for watch.NEVER_SETTLE seconds
    file = watching_file(
        workdir, name, slurm=f'partition: {partition}, time: "00:10:00", poll_interval: 0.5'
    )
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    return file


def _cannot_start_seen(layout) -> bool:
    state = read_state(layout) or {}
    details = [str(i.get("detail") or "") for i in state.get("instances", {}).values()]
    return any(never_starts(detail) for detail in details)


def _user_env(env: dict[str, str]) -> dict[str, str]:
    """As `slurm_support.run_pipeline`: the venv's bin first on PATH, no ASAPO_PIPELINES_*."""
    clean = {k: v for k, v in env.items() if not k.startswith("ASAPO_PIPELINES_")}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    return clean
