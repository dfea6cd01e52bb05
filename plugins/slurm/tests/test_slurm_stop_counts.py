"""`pipeline stop` counts the jobs it cancelled, and names those that had already ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from slurm_support import executor, run_pipeline, squeue, wait_until

PIPELINE_FILE = """\
pipeline: stop-count
units:
  files:
    unit: core.files
    params: {directory: files/, pattern: "*.txt", watch: true, settle_seconds: 0.1}
    outputs: {files: raw}
  pass:
    unit: core.identity
    inputs: {input: raw}
    outputs: {output: checked}
  sink:
    unit: core.jsonl-sink
    params: {path: results/out.jsonl, payload: text}
    inputs: {messages: checked}
deploy:
  slurm: {partition: debug, time: "30:00", poll_interval: 0.5}
"""


def test_stop_counts_only_the_jobs_it_cancelled(slurm, workdir):
    (workdir / "files").mkdir()
    file = workdir / "stop-count.pipeline.yaml"
    file.write_text(PIPELINE_FILE)
    ex = executor(file)  # registered, so that a failing test leaves nothing behind
    done = run_pipeline("deploy", str(file), "--json", env=slurm.env)
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)["jobs"]
    state = json.loads(ex.layout.state.read_text())

    # the login node's watcher is gone (a reboot), and meanwhile two jobs ended: one
    # cancelled by an administrator, one killed; the state still calls them running
    os.kill(state["watcher_pid"], signal.SIGKILL)
    ended = [jobs["pass-0"], jobs["sink-0"]]
    subprocess.run(["scancel", jobs["pass-0"]], env=slurm.env, check=True, timeout=30)
    subprocess.run(
        ["scancel", "--signal=KILL", jobs["sink-0"]], env=slurm.env, check=True, timeout=30
    )
    wait_until(
        "the two jobs to end",
        lambda: all(
            squeue(ended, slurm.env).get(j) in (None, "CANCELLED", "FAILED") for j in ended
        ),
        timeout=30,
    )

    # status says how they ended, in the executor's words (Slurm's `cancelled` is its own)
    shown = json.loads(run_pipeline("status", str(file), "--json", env=slurm.env).stdout)
    states = {i["unit"]: (i["state"], i["detail"]) for i in shown["instances"]}
    assert states["pass"] == ("exited", f"job {jobs['pass-0']} ended CANCELLED")
    assert states["sink"][0] == "exited"

    stopped = run_pipeline("stop", str(file), env=slurm.env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == (
        "stopped pipeline stop-count with the slurm executor: 1 Slurm job(s) cancelled "
        f"({jobs['files-0']}); 2 had already ended ({', '.join(ended)})"
    )
    after = json.loads(run_pipeline("status", str(file), "--json", env=slurm.env).stdout)
    details = {i["unit"]: i["detail"] for i in after["instances"]}
    assert details == {
        "files": "cancelled by pipeline stop",
        "pass": f"job {jobs['pass-0']} had ended before pipeline stop",
        "sink": f"job {jobs['sink-0']} had ended before pipeline stop",
    }
