"""The core example (files -> identity -> JSON lines) on a real one-node Slurm."""

from __future__ import annotations

import json
import socket
import sys

from slurm_support import (
    copy_example,
    executor,
    jsonl_jobs,
    jsonl_records,
    run_locally,
    squeue,
    wait_finished,
)

EXAMPLE = "files-to-jsonl.pipeline.yaml"


def test_core_example_runs_as_one_slurm_job_per_unit_with_the_local_executors_results(
    slurm, workdir
):
    on_slurm = copy_example(EXAMPLE, workdir / "slurm", "files")
    local = copy_example(EXAMPLE, workdir / "local", "files")
    # the workers run from an existing environment, as on a cluster's shared filesystem (the
    # other tests use the default: the interpreter that deploys)
    ex = executor(on_slurm, python={"venv": sys.prefix})

    deployed = ex.deploy(wait=30)
    jobs = deployed["jobs"]
    assert sorted(jobs) == ["files-0", "pass-0", "sink-0"]
    assert len(set(jobs.values())) == 3
    assert all(j.isdigit() for j in jobs.values())
    # Slurm itself knows the three jobs, under the deployment's names
    assert set(squeue(list(jobs.values()), slurm.env)) == set(jobs.values())

    status = wait_finished(ex, timeout=60)
    assert status.state == "complete", status
    assert {(i.unit, i.task_id, i.state) for i in status.instances} == {
        (key.rsplit("-", 1)[0], job, "complete") for key, job in jobs.items()
    }
    assert all(i.restarts == 0 for i in status.instances)

    done = run_locally(local)
    assert done.returncode == 0, done.stdout + done.stderr
    slurm_records = jsonl_records(on_slurm.parent / "results" / "files.jsonl")
    assert len(slurm_records) == 3
    assert slurm_records == jsonl_records(local.parent / "results" / "files.jsonl")
    # each line names the Slurm job that computed it (the pass unit's) and its node, as
    # Slurm ran it; the local run's lines name the local executor
    results = on_slurm.parent / "results" / "files.jsonl"
    assert jsonl_jobs(results) == {("pass", "slurm", jobs["pass-0"])}
    for line in results.read_text().splitlines():
        producer = json.loads(line)["producer"]
        assert producer["job"]["node"] == slurm.node
        assert producer["host"] == socket.gethostname()
    assert jsonl_jobs(local.parent / "results" / "files.jsonl") == {("pass", "local", None)}

    # the sink's log, from its job's output file (the worker logs to stderr)
    script = (ex.layout.root / "jobs" / "sink-0.sh").read_text()
    assert f"exec {sys.prefix}/bin/pipeline worker " in script
    lines = list(ex.logs("sink", stderr=True))
    # its start line names the node as the results do (Slurm's name, not the hostname)
    start = f"asapo-pipelines: Slurm job {jobs['sink-0']} on {slurm.node} at "
    assert any(line.startswith(start) for line in lines), lines
    assert any("3 processed" in line for line in lines), lines
