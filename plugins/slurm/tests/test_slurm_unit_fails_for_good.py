"""A unit that fails for good (here a configuration error, exit code 78, which no restart can
fix) ends the whole deployment, as on the local executor: the watcher cancels the other jobs,
the run ends `failed` with the unit's reason, and `pipeline status` shows it."""

from __future__ import annotations

import json

from slurm_support import executor, run_pipeline, runs_of, squeue, wait_until

from asapo_pipelines_slurm.watch import ALIVE

PIPELINE_FILE = """\
pipeline: broken
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
  slurm: {partition: debug, poll_interval: 0.5, restart: {attempts: 1, delay: 1}}
"""
#: What the files unit says of its missing directory.
REASON = "directory nothere does not exist"


def test_a_unit_that_fails_for_good_stops_the_deployment_and_fails_its_run(slurm, workdir):
    file = workdir / "broken.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    # not waited for: a deploy that sees the unit fail within its wait fails itself
    # (test_slurm_deploy_wait_failed); here the watcher alone is to end the deployment
    deployed = run_pipeline("deploy", str(file), "--wait", "0", env=env)
    assert deployed.returncode == 0, deployed.stderr
    status = json.loads(run_pipeline("status", str(file), "--json", env=env).stdout)
    jobs = {i["unit"]: i["task_id"] for i in status["instances"]}

    # nobody asks for the status or stops it: the watcher ends the deployment and its run
    def ended():
        (run,) = runs_of(file, env)
        return run if run["state"] != "running" else None

    run = wait_until("the run to end", ended, timeout=60, every=1)
    assert run["state"] == "failed"
    assert "files replica 0" in run["message"]
    assert REASON in run["message"]
    # the sink's job was cancelled, not left holding its allocation until its time limit. A
    # cancelled job passes through COMPLETING while slurmd ends its processes, so the test waits
    # for that rather than asking once; a job nobody cancelled stays RUNNING and fails it.
    sink = jobs["sink"]
    wait_until("the sink's job to end", lambda: squeue([sink], env).get(sink) not in ALIVE, 30)

    shown = run_pipeline("status", str(file), "--json", env=env)
    assert shown.returncode == 1
    after = json.loads(shown.stdout)
    assert after["state"] == "failed"
    states = {i["unit"]: (i["state"], i["detail"]) for i in after["instances"]}
    assert states["files"][0] == "failed"
    assert REASON in states["files"][1]
    assert states["sink"] == ("stopped", "cancelled: unit files replica 0 failed")
    text = run_pipeline("status", str(file), env=env)
    assert REASON in text.stdout + text.stderr

    # a stop finds nothing to stop: the run stays failed, not stopped
    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    (run,) = runs_of(file, env)
    assert run["state"] == "failed"


def test_a_failed_runs_message_ends_as_the_workers_error_does(slurm, workdir):
    """The run's message when the deployment ended on its own (the core's `settle`) says each
    failed unit after a colon: in brackets, a worker's error that ends in a bracket of its own
    (the sink's folder cannot be made: "... (relative paths in a pipeline file are relative to
    its folder, DIR)") read "...))"."""
    (workdir / "files").mkdir()
    (workdir / "blocker").write_text("a file where the sink's folder should be\n")
    file = workdir / "blocked.pipeline.yaml"
    file.write_text(
        PIPELINE_FILE.replace("pipeline: broken", "pipeline: blocked")
        .replace("nothere/", "files/")
        .replace("results/out.jsonl", "blocker/sub/out.jsonl")
    )
    executor(file)
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), "--wait", "0", env=env)
    assert deployed.returncode == 0, deployed.stderr

    def ended():
        (run,) = runs_of(file, env)
        return run if run["state"] != "running" else None

    run = wait_until("the run to end", ended, timeout=60, every=1)
    assert run["state"] == "failed", run
    # the sentence `pipeline runs` shows for a failed run
    shown = run_pipeline("runs", str(file), env=env)
    assert shown.returncode == 0, shown.stderr
    # after the table, wrapped to the terminal's width
    _, _, after = shown.stdout.partition(f"\n{run['id']} failed: ")
    said = " ".join(after.split())
    assert said.startswith("the slurm deployment blocked ended failed: sink replica 0: job "), said
    assert "ended FAILED with exit code 78: " in said, said
    assert "Not a directory (blocker/sub)" in said, said
    # the worker's own error ends the sentence, its bracket not doubled
    assert said.endswith(f"relative to its folder, {workdir})"), said
