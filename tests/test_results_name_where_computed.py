"""Each result names where it was computed: the host and the executor's job of the worker that
made it, in the producer record `core.jsonl-sink` writes on each line. Real `pipeline run`
(the local executor, whose workers inherit the run's environment), the embedded store.

Before: a line named the unit, its version, params and run, but not the host nor the Slurm job
that computed it: an operator who found one bad result among a night's could not match it to a
node with a bad disk or to the job's log."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

from asapo_pipelines.worker.placement import placement

from helpers import core_pipeline, run_pipeline


def _run(tmp_path: Path, env: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    """`pipeline run` of files -> copy -> sink on two files: the sink's lines and the output."""
    files = tmp_path / "files"
    files.mkdir()
    for name in ("a.txt", "b.txt"):
        (files / name).write_text(f"{name}\n")
    out = tmp_path / "out.jsonl"
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    done = run_pipeline("run", str(file), cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 2, said
    return lines, said


def _pid_of(said: str, instance: str) -> int:
    """The pid `pipeline run` says it started the worker of `instance` with."""
    found = re.search(rf"^{instance}\[0\] started, pid (\d+)$", said, re.MULTILINE)
    assert found, said
    return int(found[1])


def test_a_run_inside_a_slurm_job_names_the_job_and_node_on_each_line(tmp_path: Path) -> None:
    lines, said = _run(tmp_path, {"SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "node-7"})
    copy = _pid_of(said, "copy")
    for line in lines:
        producer = line["producer"]
        assert producer["instance"] == "copy", line
        assert producer["host"] == socket.gethostname()
        assert producer["job"] == {"executor": "slurm", "id": "4242", "node": "node-7", "pid": copy}
        # the message's own provenance carries it: a sink of another pipeline finds it there
        assert line["metadata"]["provenance"]["job"] == producer["job"]


def test_a_run_resumed_in_another_slurm_job_is_unchanged_and_names_each_lines_job(
    tmp_path: Path,
) -> None:
    """Where a result is computed is no part of the configuration: a run resumed in the next
    Slurm job (another job id, another node) is the same run, unchanged, and only its new
    results name the new job."""
    lines, _ = _run(tmp_path, {"SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "node-7"})
    (tmp_path / "files" / "c.txt").write_text("c.txt\n")
    file = tmp_path / "faults.pipeline.yaml"
    env = {"SLURM_JOB_ID": "4243", "SLURMD_NODENAME": "node-8"}
    done = run_pipeline("run", "--resume", str(file), cwd=tmp_path, env=env)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "resuming run r1 of pipeline faults (unchanged)" in said, said
    now = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert now[:2] == lines
    assert [(line["producer"]["job"]["id"], line["producer"]["job"]["node"]) for line in now] == [
        ("4242", "node-7"),
        ("4242", "node-7"),
        ("4243", "node-8"),
    ]


def test_a_local_run_names_the_host_and_the_workers_pid_on_each_line(tmp_path: Path) -> None:
    """The local executor gives its tasks Nomad's variables: still a local job, not Nomad's."""
    # (empty: as unset, should the tests themselves run inside a Slurm job)
    lines, said = _run(tmp_path, {"SLURM_JOB_ID": ""})
    copy = _pid_of(said, "copy")
    for line in lines:
        producer = line["producer"]
        assert producer["host"] == socket.gethostname(), line
        assert producer["job"] == {"executor": "local", "pid": copy}


def test_a_nomad_task_names_its_job_allocation_and_task_by_nomads_documented_variables() -> None:
    """No Nomad agent runs here: Nomad's documented runtime variables ("Runtime Environment"),
    as every task gets them, against what the worker makes of them."""
    alloc = "5b4ab05e-0b2e-4a5c-9b2e-6c1c8a2f9d11"
    environ = {
        "NOMAD_ALLOC_ID": alloc,
        "NOMAD_JOB_ID": "p65-xas",
        "NOMAD_JOB_NAME": "p65-xas",
        "NOMAD_TASK_NAME": "normalize",
    }
    job = {"executor": "nomad", "id": "p65-xas", "alloc": alloc, "task": "normalize", "pid": 7}
    assert placement(environ, host="node3", pid=7) == {"host": "node3", "job": job}
    # a job of a Slurm array names its array and task too
    slurm = {
        "SLURM_JOB_ID": "101",
        "SLURMD_NODENAME": "n1",
        "SLURM_ARRAY_JOB_ID": "100",
        "SLURM_ARRAY_TASK_ID": "1",
    }
    assert placement(slurm, host="n1", pid=8)["job"] == {
        "executor": "slurm",
        "id": "101",
        "node": "n1",
        "array_job": "100",
        "array_task": "1",
        "pid": 8,
    }
