"""`pipeline plan` of a Slurm deployment: readable per unit (its sbatch command and script),
JSON only with --json, and the partition checked against the cluster when it can be asked."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from slurm_support import run_pipeline

PIPELINE_FILE = """\
pipeline: plan-me
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt"}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: raw}
    resources: {cpu: 2500, memory: 3000}
deploy:
  slurm: {partition: PARTITION, time: "30:00"}
"""


def _file(workdir: Path, partition: str) -> Path:
    (workdir / "files").mkdir(exist_ok=True)
    file = workdir / "plan-me.pipeline.yaml"
    file.write_text(PIPELINE_FILE.replace("PARTITION", partition))
    return file


def _sbatch_lines(text: str, unit: str) -> list[str]:
    """The sbatch command the text shows for `unit`, as a shell would read it."""
    lines = text.splitlines()
    start = lines.index(f"unit {unit} replica 0: job plan-me.{unit}.0") + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    return shlex.split(" ".join(line.rstrip("\\") for line in lines[start : end + 1]))


def test_plan_shows_each_units_sbatch_command_and_script_and_json_only_when_asked(slurm, workdir):
    file = _file(workdir, "debug")
    done = run_pipeline("plan", str(file), env=slurm.env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert not text.lstrip().startswith("{"), "plan printed JSON without --json"
    assert text.splitlines()[:2] == [
        f"pipeline plan-me on Slurm: 2 batch job(s), one per unit instance; state in "
        f"{workdir}/.pipeline-slurm/plan-me",
        "partition: debug (UP on the cluster)",
    ]
    as_json = run_pipeline("plan", str(file), "--json", env=slurm.env)
    assert as_json.returncode == 0, as_json.stderr
    planned = json.loads(as_json.stdout)
    assert planned["partition"] == {"name": "debug", "checked": True, "state": "UP"}
    for job in planned["jobs"]:
        # the command shown is the one deploy runs, and the script follows it, indented
        assert _sbatch_lines(text, job["unit"]) == ["sbatch", *job["options"], job["script_path"]]
        script = "\n".join(f"    {line}" for line in job["script"].splitlines())
        assert f"  script {job['script_path']}:\n{script}\n" in text
        # the job's start line names its node as the results' provenance does: Slurm's name
        # (SLURMD_NODENAME), which a node's hostname need not be
        assert (
            'echo "asapo-pipelines: Slurm job $SLURM_JOB_ID on $SLURMD_NODENAME at $(date -Is)" >&2'
            in job["script"].splitlines()
        )
    assert "--cpus-per-task=3" in _sbatch_lines(text, "sink")
    # warnings go to stderr, in both forms
    assert "warning: the embedded transport keeps its data in" in done.stderr
    assert "warning: the embedded transport keeps its data in" in as_json.stderr


def test_plan_refuses_a_partition_the_cluster_does_not_have(slurm, workdir):
    done = run_pipeline("plan", str(_file(workdir, "debgu")), env=slurm.env)
    assert done.returncode == 1
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert errors == [
        "error: Slurm has no partition 'debgu' (did you mean debug? its partitions: debug)"
    ]


def test_plan_warns_of_a_partition_that_is_down(slurm, workdir, down_partition):
    done = run_pipeline("plan", str(_file(workdir, down_partition)), env=slurm.env)
    assert done.returncode == 0, done.stderr
    assert f"partition: {down_partition} (DOWN on the cluster)" in done.stdout
    assert f"warning: partition {down_partition} is DOWN: Slurm would hold its jobs" in (
        done.stderr
    )


def test_plan_works_without_the_slurm_tools_and_says_it_did_not_check(workdir):
    file = _file(workdir, "debug")
    # a laptop: no Slurm command on PATH
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = run_pipeline("plan", str(file), env=env)
    assert done.returncode == 0, done.stderr
    assert "partition: debug (not checked)" in done.stdout
    assert (
        "warning: partition debug was not checked: the Slurm command scontrol is not on PATH"
        in done.stderr
    )
    planned = json.loads(run_pipeline("plan", str(file), "--json", env=env).stdout)
    assert planned["partition"]["checked"] is False
    assert planned["partition"]["why"].startswith("the Slurm command scontrol is not on PATH")


def test_plan_says_it_did_not_check_when_slurm_conf_names_no_file(workdir):
    # the tools would retry a missing configuration file for a minute: plan says so at once
    env = {**os.environ, "SLURM_CONF": str(workdir / "missing.conf")}
    done = run_pipeline("plan", str(_file(workdir, "debug")), env=env)
    assert done.returncode == 0, done.stderr
    assert (
        f"warning: partition debug was not checked: SLURM_CONF names "
        f"'{workdir}/missing.conf', which is not a file" in done.stderr
    )
