"""Item 5 of #12: a stop signal takes effect during start-up (no further task is started), and a
runaway pipeline is refused before anything starts, in one sentence."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults_support import alive, env, kill_run, pipeline, read_state

from helpers import PIPELINE

NS = 1_000_000_000
SLEEPER = "import time; time.sleep(120)"


def sleepers_job(count: int, job_id: str = "many") -> dict:
    groups = [
        {
            "Name": f"u{i:04d}",
            "Count": 1,
            "RestartPolicy": {"Attempts": 0, "Interval": 60 * NS, "Delay": NS, "Mode": "fail"},
            "Tasks": [
                {
                    "Name": f"u{i:04d}",
                    "Driver": "raw_exec",
                    "Config": {"command": sys.executable, "args": ["-c", SLEEPER]},
                    "KillTimeout": 2 * NS,
                }
            ],
        }
        for i in range(count)
    ]
    return {"Job": {"ID": job_id, "Name": job_id, "Type": "service", "TaskGroups": groups}}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_start_up_stops_starting_tasks(tmp_path: Path, sig) -> None:
    units = 120
    job_file = tmp_path / "many.json"
    job_file.write_text(json.dumps(sleepers_job(units)))
    run_dir = tmp_path / "data" / "runs" / "many"
    proc = subprocess.Popen(
        [PIPELINE, "run", str(job_file), "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # the machine's limit is not what this test is about (other runs may share the machine)
        env=env(ASAPO_PIPELINES_MAX_PROCESSES="100000"),
    )
    try:
        # the supervisor writes its first state just before it starts the first task
        deadline = time.monotonic() + 60
        while read_state(run_dir) is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_run(run_dir)
    assert proc.returncode == 130, err
    started = re.findall(r"started, pid (\d+)", out)
    # start-up does not run to its end before the signal is looked at
    assert len(started) < units, f"all {units} tasks were started after {sig.name}"
    assert f"stopping all tasks ({sig.name})" in out
    assert not [pid for pid in map(int, started) if alive(pid)]
    state = read_state(run_dir)
    assert state is not None
    assert state["status"] == "stopped"


def test_too_many_units_are_refused_before_anything_starts(tmp_path: Path) -> None:
    job_file = tmp_path / "huge.json"
    job_file.write_text(json.dumps(sleepers_job(3000, "huge")))
    done = pipeline("run", str(job_file), "--data-dir", str(tmp_path / "data"), timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: job huge has 3000 units (counting replicas), more than the 500 the local "
        "executor runs; split the pipeline, or set ASAPO_PIPELINES_MAX_UNITS if this machine "
        "can take it"
    )
    assert not (tmp_path / "data" / "runs" / "huge" / "alloc").exists()


LIMIT_DRIVER = """
import json, subprocess, sys, time
pipeline, first, second, data = sys.argv[1:5]
started = subprocess.run([pipeline, "run", first, "--detach", "--data-dir", data],
                         capture_output=True, text=True)
state_file = data + "/runs/first/state.json"
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        state = json.load(open(state_file))
    except (OSError, ValueError):
        state = {}
    if sum(1 for u in state.get("units", []) if u.get("pid")) == 3:
        break
    time.sleep(0.05)
refused = subprocess.run([pipeline, "run", second, "--data-dir", data],
                         capture_output=True, text=True)
subprocess.run([pipeline, "stop", "--run-dir", data + "/runs/first"], capture_output=True)
print(json.dumps({"started": started.returncode, "started_err": started.stderr,
                  "refused": refused.returncode, "refused_err": refused.stderr}))
"""


def test_processes_per_machine_are_capped_counting_other_runs(tmp_path: Path) -> None:
    """Two runs on one machine: the second is refused while the first's processes run. The
    machine is a PID namespace of its own (`unshare`), so the count is not disturbed by other
    pipelines running on the real machine."""
    unshare = shutil.which("unshare")
    if unshare is None or os.getuid() != 0:
        pytest.skip("a machine of its own needs `unshare` as root (CI runs as root)")
    probe = subprocess.run(
        [unshare, "--fork", "--pid", "--mount-proc", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"unshare is not allowed here: {probe.stderr.decode().strip()}")
    first = tmp_path / "first.json"
    first.write_text(json.dumps(sleepers_job(3, "first")))
    second = tmp_path / "second.json"
    second.write_text(json.dumps(sleepers_job(3, "second")))
    done = subprocess.run(
        [
            unshare,
            "--fork",
            "--pid",
            "--mount-proc",
            sys.executable,
            "-c",
            LIMIT_DRIVER,
            PIPELINE,
            str(first),
            str(second),
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        env=env(ASAPO_PIPELINES_MAX_PROCESSES="5"),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["started"] == 0, result["started_err"]
    assert result["refused"] == 1
    assert result["refused_err"].strip() == (
        "error: job second needs 3 processes and 3 pipeline task processes already run on "
        "this machine, more than the 5 allowed per machine; stop other runs, or set "
        "ASAPO_PIPELINES_MAX_PROCESSES if this machine can take it"
    )
    assert not (tmp_path / "data" / "runs" / "second" / "alloc").exists()
