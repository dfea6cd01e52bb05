"""A worker job killed with `scancel --signal=KILL` mid-run is resubmitted, counted and shown;
the sink still holds every input exactly once; `stop` cancels every job."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from slurm_support import executor, squeue, wait_until

N_FILES = 40

PIPELINE = """\
pipeline: slurm-restart
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
"""


def _payloads(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["payload"] for line in path.read_text().splitlines() if line]


def _write(folder: Path, numbers: range) -> None:
    for i in numbers:
        tmp = folder / f".f{i:03d}.tmp"
        tmp.write_text(f"input {i}\n")
        tmp.rename(folder / f"f{i:03d}.txt")


def test_a_killed_worker_job_is_resubmitted_and_the_sink_holds_every_input_once(slurm, workdir):
    (workdir / "files").mkdir()
    file = workdir / "restart.pipeline.yaml"
    file.write_text(PIPELINE)
    # a killed worker's unacknowledged messages go to its successor after 2 s, not 30
    ex = executor(file, lease_seconds=2)
    jobs = ex.deploy(wait=30)["jobs"]
    out = workdir / "results" / "out.jsonl"

    _write(workdir / "files", range(N_FILES // 2))
    wait_until("the first inputs at the sink", lambda: len(_payloads(out)) >= 5, timeout=30)

    # kill the processor's job outright, as an out-of-memory kill or an admin would
    killed = jobs["pass-0"]
    subprocess.run(["scancel", "--signal=KILL", killed], env=slurm.env, check=True, timeout=30)
    _write(workdir / "files", range(N_FILES // 2, N_FILES))

    def restarted():
        inst = next(i for i in ex.status().instances if i.unit == "pass")
        return inst if inst.restarts == 1 and inst.state == "running" else None

    inst = wait_until("the killed job to be resubmitted and run", restarted, timeout=30)
    assert inst.task_id != killed
    assert squeue([killed], slurm.env).get(killed) in (None, "CANCELLED", "FAILED")
    status = ex.status()
    assert status.extra["jobs"]["pass-0"] == [killed, inst.task_id]
    assert {i.unit: i.restarts for i in status.instances} == {"files": 0, "pass": 1, "sink": 0}

    wait_until("every input at the sink", lambda: len(_payloads(out)) >= N_FILES, timeout=45)
    time.sleep(1.5)  # anything processed twice would arrive now
    payloads = _payloads(out)
    assert sorted(payloads) == sorted(f"input {i}\n" for i in range(N_FILES))

    # stop: every job of the deployment is cancelled, none is resubmitted
    current = [i.task_id for i in ex.status().instances]
    stopped = ex.stop()
    assert sorted(stopped["cancelled"]) == sorted(current)

    def all_ended():
        states = squeue(current, slurm.env)
        return all(states.get(j) in (None, "CANCELLED") for j in current)

    wait_until("the cancelled jobs to end", all_ended, timeout=30)
    time.sleep(1.5)  # longer than the watcher's poll: nothing comes back
    after = ex.status()
    assert after.state == "stopped"
    assert {i.state for i in after.instances} == {"stopped"}
    assert [i.task_id for i in after.instances] == current
    names = subprocess.run(
        ["squeue", "--noheader", "--format=%j"], env=slurm.env, capture_output=True, text=True
    ).stdout.split()
    assert not [n for n in names if n.startswith("slurm-restart.")]

    # start: the stopped instances are submitted again (new jobs), and watched again
    started = ex.start(wait=30)
    assert started["submitted"] == ["files-0", "pass-0", "sink-0"]
    again = ex.status()
    assert again.state == "running"
    assert {i.state for i in again.instances} == {"running"}
    assert not {i.task_id for i in again.instances} & set(current)
    ex.stop()
