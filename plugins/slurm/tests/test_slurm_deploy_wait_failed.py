"""`pipeline deploy FILE --wait N` of a unit whose job fails before the job watcher has seen it
run says that it failed, and why, and exits non-zero. Before, it said the job was "still
pending after 20 s ... (BeginTime)" and exited 0, while the job had ended with a configuration
error (exit code 78) and the deployment was about to fail.

The jobs are held for a few seconds (`--begin`) so that the watcher's first look finds them
pending, and the watcher looks again only after the deploy's wait has ended: the job starts,
fails and ends between two looks, as on a busy login node or with a long `poll_interval`."""

from __future__ import annotations

import json

from slurm_support import executor, run_pipeline, runs_of, squeue, wait_until

from asapo_pipelines_slurm.watch import ALIVE

PIPELINE_FILE = """\
pipeline: brokenwait
units:
  files:
    unit: core.files
    params: {directory: nothere/, pattern: "*.txt", watch: true, settle_seconds: 0.1}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: raw}
deploy:
  slurm:
    partition: debug
    poll_interval: 30
    restart: {attempts: 1, delay: 1}
    extra_options: ["--begin=now+8"]
"""
#: What the files unit says of its missing directory.
REASON = "directory nothere does not exist"


def test_deploy_wait_says_a_job_that_failed_unseen_failed_and_exits_non_zero(slurm, workdir):
    file = workdir / "brokenwait.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    ex = executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), "--wait", "20", env=env)
    said = deployed.stdout + deployed.stderr
    assert deployed.returncode == 1, said
    assert "still pending" not in said
    assert "Traceback" not in said
    (line,) = deployed.stderr.splitlines()
    assert line.startswith("error: unit files replica 0 of pipeline brokenwait failed: job "), line
    assert "ended FAILED with exit code 78: " in line, line
    assert REASON in line, line
    # the deployment is over: the other unit's job was cancelled, and the run ended failed
    state = ex.status()
    assert state.state == "failed"
    shown = {i.unit: i.state for i in state.instances}
    assert shown == {"files": "failed", "sink": "stopped"}
    sink = next(i.task_id for i in state.instances if i.unit == "sink")
    assert sink is not None
    wait_until("the sink's job to end", lambda: squeue([sink], env).get(sink) not in ALIVE, 60)
    (run,) = runs_of(file, env)
    assert run["state"] == "failed", run
    assert REASON in run["message"], run


def test_deploy_wait_json_prints_the_failed_document_and_exits_non_zero(slurm, workdir):
    """`--json`: stdout holds one document a script can parse, as `start --json` prints on its
    exit-78 path (`failed`: instance -> why, `message`: the error's sentence); the sentence
    stays on stderr. Before, stdout was empty."""
    file = workdir / "brokenwait.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    ex = executor(file)
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), "--wait", "20", "--json", env=env)
    assert deployed.returncode == 1, deployed.stdout + deployed.stderr
    assert "Traceback" not in deployed.stdout + deployed.stderr
    (line,) = deployed.stderr.splitlines()
    assert line.startswith("error: unit files replica 0 of pipeline brokenwait failed: "), line
    document = json.loads(deployed.stdout)
    assert document["message"] == line.removeprefix("error: ")
    assert document["deployment"] == "brokenwait"
    assert document["state"] == "failed"
    assert list(document["failed"]) == ["files-0"]
    assert "ended FAILED with exit code 78: " in document["failed"]["files-0"]
    assert REASON in document["failed"]["files-0"]
    # what a successful deploy's document holds is there too: the jobs it submitted
    assert set(document["jobs"]) == {"files-0", "sink-0"}
    assert document["state_dir"] == str(ex.layout.root)
    # who ends the run is as without --json: it ends failed, with the unit's reason
    (run,) = runs_of(file, env)
    assert run["state"] == "failed", run
    assert REASON in run["message"], run
