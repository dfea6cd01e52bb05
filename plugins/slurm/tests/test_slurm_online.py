"""The partition of `deploy.slurm`, asked of a real Slurm through the `check_online` hook:
`pipeline validate --online` reports it at its line, `pipeline deploy` refuses before it
submits or records anything, and a run on this machine does not ask the cluster at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from slurm_support import run_pipeline, runs_of

PIPELINE_FILE = """\
pipeline: online
units:
  files:
    unit: core.files
    params: {{directory: files/, pattern: "*.txt"}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/out.jsonl, payload: text}}
    inputs: {{messages: raw}}
deploy:
  slurm:
    time: "30:00"
    partition: {partition}
"""


def _file(workdir: Path, partition: str) -> tuple[Path, str]:
    (workdir / "files").mkdir(exist_ok=True)
    (workdir / "files" / "a.txt").write_text("first\n")
    file = workdir / "online.pipeline.yaml"
    text = PIPELINE_FILE.format(partition=partition)
    file.write_text(text)
    lines = text.splitlines()
    line = next(i for i, t in enumerate(lines, 1) if t.strip().startswith("partition:"))
    return file, f"{file.name}:{line}:{lines[line - 1].index(partition) + 1}"


def test_validate_online_reports_an_unknown_partition_at_its_line(slurm, workdir):
    file, place = _file(workdir, "debgu")
    offline = run_pipeline("validate", file.name, env=slurm.env, cwd=workdir)
    assert offline.returncode == 0, offline.stdout  # nothing to see without the cluster

    online = run_pipeline("validate", "--online", file.name, env=slurm.env, cwd=workdir)
    assert online.returncode == 1
    assert online.stdout.splitlines() == [
        f"{place}: error P501 Slurm has no partition 'debgu' (did you mean debug? its "
        "partitions: debug)"
    ]


def test_validate_online_reports_a_partition_that_is_down(slurm, workdir, down_partition):
    file, place = _file(workdir, down_partition)
    online = run_pipeline("validate", "--online", file.name, env=slurm.env, cwd=workdir)
    assert online.returncode == 1
    assert online.stdout.splitlines() == [
        f"{place}: error P501 Slurm's partition {down_partition} is DOWN: it starts no new "
        "jobs until an administrator sets it UP"
    ]
    up, _ = _file(workdir, "debug")
    assert run_pipeline("validate", "--online", up.name, env=slurm.env, cwd=workdir).returncode == 0


def test_validate_online_without_the_slurm_tools_warns_that_it_did_not_check(workdir):
    file, place = _file(workdir, "debug")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # a laptop: no Slurm
    online = run_pipeline("validate", "--online", file.name, env=env, cwd=workdir)
    assert online.returncode == 0, online.stdout
    assert online.stdout.splitlines()[0] == (
        f"{place}: warning P502 partition debug was not checked: the Slurm command scontrol "
        "is not on PATH; run on a login node of the cluster (or install the Slurm client "
        "tools, e.g. Debian's slurm-client)"
    )


def test_deploy_to_a_partition_that_is_down_is_refused_before_anything_is_submitted(
    slurm, workdir, down_partition
):
    file, place = _file(workdir, down_partition)
    done = run_pipeline("deploy", file.name, env=slurm.env, cwd=workdir)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == [
        f"error: {place}: Slurm's partition {down_partition} is DOWN: it starts no new jobs "
        "until an administrator sets it UP"
    ]
    assert runs_of(file, slurm.env) == []  # nothing recorded
    queued = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%j"],
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert [j for j in queued.stdout.split() if j.startswith("online.")] == []  # none submitted


def test_a_run_on_this_machine_does_not_ask_the_cluster_its_file_is_also_meant_for(slurm, workdir):
    file, _place = _file(workdir, "nope")  # wrong for Slurm, irrelevant here
    done = run_pipeline("run", file.name, env=slurm.env, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "partition" not in done.stderr
    assert (workdir / "results" / "out.jsonl").read_text().count("\n") == 1
