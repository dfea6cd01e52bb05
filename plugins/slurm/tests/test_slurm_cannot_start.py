"""A job Slurm accepts but can never start (it asks for more CPUs than a node has, or its
partition went down after the check before submission, test_slurm_online) fails `pipeline
deploy` at once, in one sentence naming the unit and Slurm's reason, and leaves no job behind;
a job pending for a reason that passes is reported as pending."""

from __future__ import annotations

import json
import subprocess

import pytest
from slurm_support import executor, run_pipeline, runs_of, watching_file

from asapo_pipelines_slurm.testing import PARTITION


def _write(workdir, name, *, partition=PARTITION, sink_resources="", extra=""):
    file = watching_file(
        workdir,
        name,
        slurm=f'partition: {partition}, time: "30:00", poll_interval: 0.5{extra}',
        sink_resources=sink_resources,
    )
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    return file


def _jobs_of(name: str, env: dict[str, str]) -> list[str]:
    """The pipeline's jobs that still wait or run, as squeue shows them."""
    done = subprocess.run(
        ["squeue", "--noheader", "--states=PENDING,RUNNING,CONFIGURING", "--format=%j"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return [job for job in done.stdout.split() if job.startswith(f"{name}.")]


def test_a_job_no_node_can_hold_fails_the_deploy_at_once_and_leaves_nothing(slurm, workdir):
    # one CPU more than the only node has: Slurm accepts the job and keeps it pending for
    # PartitionConfig for ever
    cpu = (slurm.cpus + 1) * 1000
    file = _write(workdir, "too-big", sink_resources=f"    resources: {{cpu: {cpu}}}\n")
    # a wait far beyond the command's own timeout (120 s): a deploy that waited for its budget
    # instead of ending at once would not come back at all
    done = run_pipeline("deploy", str(file), "--wait", "600", env=slurm.env)

    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: Slurm cannot start the job of unit sink replica 0 (job "), (
        errors[0]
    )
    assert "is pending for PartitionConfig: it asks for more CPUs, memory or GPUs" in errors[0]
    assert errors[0].endswith("so the deployment's 2 Slurm job(s) were cancelled")
    assert _jobs_of("too-big", slurm.env) == []

    status = run_pipeline("status", str(file), "--json", env=slurm.env)
    shown = json.loads(status.stdout)
    assert status.returncode == 1
    assert shown["state"] == "failed"
    assert {i["unit"]: i["state"] for i in shown["instances"]} == {
        "files": "stopped",
        "sink": "failed",
    }
    assert [run["state"] for run in runs_of(file, slurm.env)] == ["failed"]


def test_a_job_pending_for_a_reason_that_passes_is_reported_pending(slurm, workdir):
    # a start time an hour away: Slurm keeps the jobs pending for BeginTime, which passes
    file = _write(workdir, "later", extra=', extra_options: ["--begin=now+1hour"]')
    done = run_pipeline("deploy", str(file), "--wait", "3", env=slurm.env)
    try:
        assert done.returncode == 0, done.stderr
        assert "2 still pending after 3 s: files-0 (BeginTime), sink-0 (BeginTime)" in done.stdout
        as_json = run_pipeline("status", str(file), "--json", env=slurm.env)
        assert {i["state"] for i in json.loads(as_json.stdout)["instances"]} == {"pending"}
        assert len(_jobs_of("later", slurm.env)) == 2
    finally:
        stopped = run_pipeline("stop", str(file), env=slurm.env)
    assert stopped.returncode == 0, stopped.stderr


@pytest.mark.parametrize(
    ("reason", "never"),
    [
        ("PartitionConfig", True),
        ("PartitionDown", True),
        ("PartitionTimeLimit", True),
        ("QOSMaxWallDurationPerJobLimit", True),
        ("AssocMaxCpuPerJobLimit", True),
        ("Resources", False),
        ("Priority", False),
        ("BeginTime", False),
        ("QOSMaxJobsPerUserLimit", False),
        ("AssocGrpCpuLimit", False),
        ("ReqNodeNotAvail, UnavailableNodes:node3", False),
        ("None", False),
    ],
)
def test_which_pending_reasons_mean_a_job_cannot_start(reason, never):
    from asapo_pipelines_slurm.commands import never_starts

    assert bool(never_starts(reason)) is never
