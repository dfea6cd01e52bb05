"""The `pipeline` commands on a file whose deploy section is `slurm:`: the executor is found
through the `register_executors` hook and the commands dispatch to it, on a real Slurm."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from slurm_support import PIPELINE, squeue, wait_until

PIPELINE_FILE = """\
pipeline: slurm-cli
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt", watch: true, settle_seconds: 0.1}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: raw}
deploy:
  slurm: {partition: debug, time: "30:00", poll_interval: 0.5}
"""


def pipeline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in env.items() if not k.startswith("ASAPO_PIPELINES_")}
    return subprocess.run(
        [PIPELINE, *args],
        env={**clean, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_deploy_status_logs_stop_through_the_pipeline_command(slurm, workdir):
    (workdir / "files").mkdir()
    (workdir / "files" / "a.txt").write_text("first\n")
    file = workdir / "cli.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    env = slurm.env

    done = pipeline("validate", str(file), env=env)
    assert done.returncode == 0, done.stderr
    plan = json.loads(pipeline("plan", str(file), "--json", env=env).stdout)
    assert plan["executor"] == "slurm"
    assert "--time=30:00" in plan["jobs"][0]["options"]

    done = pipeline("deploy", str(file), "--json", env=env)
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)["jobs"]
    assert sorted(jobs) == ["files-0", "sink-0"]
    try:
        out = workdir / "results" / "out.jsonl"
        wait_until("the file at the sink", lambda: out.exists() and out.read_text(), timeout=40)

        status = json.loads(pipeline("status", str(file), "--json", env=env).stdout)
        assert status["executor"] == "slurm"
        assert {(i["unit"], i["task_id"], i["state"]) for i in status["instances"]} == {
            ("files", jobs["files-0"], "running"),
            ("sink", jobs["sink-0"], "running"),
        }
        table = pipeline("status", str(file), env=env)
        assert table.returncode == 0, table.stderr
        assert jobs["sink-0"] in table.stdout
        assert "running" in table.stdout

        logs = pipeline("logs", str(file), "sink", "--stderr", env=env)
        assert logs.returncode == 0, logs.stderr
        assert f"Slurm job {jobs['sink-0']}" in logs.stdout
    finally:
        stopped = pipeline("stop", str(file), "--json", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(json.loads(stopped.stdout)["cancelled"]) == sorted(jobs.values())
    wait_until(
        "the jobs to end",
        lambda: all(s == "CANCELLED" for s in squeue(list(jobs.values()), env).values()),
        timeout=30,
    )
    time.sleep(1)  # longer than the watcher's poll: nothing is resubmitted
    after = json.loads(pipeline("status", str(file), "--json", env=env).stdout)
    assert after["state"] == "stopped"
    assert {i["task_id"] for i in after["instances"]} == set(jobs.values())
    # the deployment is a recorded run, told to every job, ended by stop with the counts
    (run,) = json.loads(pipeline("runs", str(file), "--json", env=env).stdout)["runs"]
    assert (run["id"], run["mode"], run["executor"], run["state"]) == (
        "r1",
        "deploy",
        "slurm",
        "stopped",
    )
    assert run["counts"]["sink"]["processed"] == 1
    lines = out.read_text().splitlines()
    assert [json.loads(line)["metadata"]["provenance"]["run"] for line in lines] == ["r1"]


def test_an_unknown_partition_is_one_sentence_and_a_non_zero_exit(slurm, workdir):
    (workdir / "files").mkdir()
    file = workdir / "cli.pipeline.yaml"
    file.write_text(PIPELINE_FILE.replace("partition: debug", "partition: nope"))
    done = pipeline("deploy", str(file), env=slurm.env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    # refused before anything is submitted, at the value's place (the `check_online` hook)
    line, text = next(
        (i, t) for i, t in enumerate(PIPELINE_FILE.splitlines(), 1) if "partition" in t
    )
    where = f"{file}:{line}:{text.index('debug') + 1}"
    assert done.stderr.strip().splitlines() == [
        f"error: {where}: Slurm has no partition 'nope' (its partitions: debug)"
    ], done.stderr


def test_no_slurm_tools_on_path_is_one_sentence(workdir):
    (workdir / "files").mkdir()
    file = workdir / "cli.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    env = {**os.environ, "PATH": str(Path(PIPELINE).parent)}
    done = pipeline("deploy", str(file), env=env)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "the Slurm command scontrol is not on PATH" in lines[0]
