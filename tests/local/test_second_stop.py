"""A second `pipeline stop` while a first one waits for tasks to drain kills them at once
(docs/running-locally.md, Stopping): the run's end says so, not the first stop's SIGTERM
while `status` shows the tasks killed by SIGKILL. A real detached supervisor, real
`pipeline stop` processes, a task that ignores SIGTERM."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from local_jobs import PIPELINE, cli_env, group, job, pipeline, read_state, task, wait_for

NS = 1_000_000_000

#: a task that will not stop on SIGTERM: only SIGKILL ends it
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "while True: time.sleep(1)\n"
)


def test_a_second_stop_while_the_first_waits_says_the_tasks_were_killed(tmp_path: Path) -> None:
    payload = job("slow", group("slow", task("slow", STUBBORN, KillTimeout=120 * NS)))
    payload["Job"]["Type"] = "service"
    job_file = tmp_path / "slow.json"
    job_file.write_text(json.dumps(payload))
    data = str(tmp_path / "data")
    started = pipeline("run", str(job_file), "--detach", "--data-dir", data)
    assert started.returncode == 0, started.stderr
    run_dir = tmp_path / "data" / "runs" / "slow"
    wait_for(lambda: (read_state(run_dir) or {}).get("units", [{}])[0].get("pid"), 30, "the task")
    first = subprocess.Popen(
        [PIPELINE, "stop", str(job_file), "--data-dir", data],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        wait_for(lambda: (read_state(run_dir) or {}).get("status") == "stopping", 30, "stopping")
        second = pipeline("stop", str(job_file), "--data-dir", data)
    finally:
        out, err = first.communicate(timeout=60)
    assert second.returncode == 0, second.stderr
    killed = "job slow stopped (SIGKILL: a stop was already under way)"
    assert second.stdout.strip() == killed, second.stdout + second.stderr
    assert first.returncode == 0, err
    assert out.strip() == killed
    state = read_state(run_dir) or {}
    assert state["units"][0]["exit_codes"][-1:] == [-9], state["units"]  # `status` shows sig9
