"""Item 1 of #12: a supervisor killed outright leaves its tasks running; a new run in the same
run directory must not run a second generation of the units beside them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from faults_support import (
    alive,
    core_pipeline,
    kill_run,
    lost_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)

from asapo_pipelines.launchplan.rundir import pid_alive, process_start
from asapo_pipelines.local.control import live_tasks


def test_rerun_without_stop_after_a_supervisor_sigkill_doubles_nothing(tmp_path: Path) -> None:
    with lost_run(tmp_path, count=300, ready=50) as lost:
        file, out, orphans = lost.file, lost.out, lost.orphans
        write_files(lost.files, 300, 600)  # the night goes on while the operator re-runs
        again = pipeline("run", str(file), "--detach", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert not any(alive(p) for p in orphans), "the lost run's tasks still run"
        log = (lost.run_dir / "supervisor.log").read_text()
        assert f"stopped {len(orphans)} tasks left running by the lost run of job faults" in log

        wait_for(lambda: len(sink_names(out)) >= 600, timeout=120, what="all 600 outputs")
        stopped = pipeline("stop", str(file), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    names = sink_names(out)
    assert sorted(names) == [f"f{i:05d}.txt" for i in range(600)]
    assert [n for n, c in names.items() if c > 1] == []


def test_a_recycled_pid_is_not_taken_for_a_task_of_the_lost_run() -> None:
    """Liveness is the pid plus its start time: a process that got the pid later is not ours,
    whatever its name."""
    me = os.getpid()
    started = process_start(me)
    assert started is not None
    record = {"pid": me, "pid_start": started, "alloc_id": "x", "group": "g", "index": 0}
    assert [u["pid"] for u in live_tasks({"units": [record]})] == [me]
    recycled = {**record, "pid_start": started - 1}
    assert live_tasks({"units": [recycled]}) == []


def test_a_start_refused_while_the_job_runs_changes_no_run(tmp_path: Path) -> None:
    """A second `pipeline run` (plain or --fresh) while one runs is refused before it records
    anything. Before, the refused --fresh left a run r2 "running" for ever, which the next plain
    run then resumed, reading every file again (every output twice); a refused plain run added
    a session to r1 whose start the workers restarted later waited for, so r1 never ended."""
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 200)
    file = core_pipeline(tmp_path, files=files, out=out, watch=True)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    try:
        assert pipeline("run", str(file), "--detach", cwd=tmp_path).returncode == 0
        wait_for(lambda: len(sink_names(out)) >= 200, timeout=120, what="the first outputs")
        supervisor = read_state(run_dir)["pid"]
        for extra in (["--fresh"], [], ["--resume"]):
            again = pipeline("run", str(file), *extra, cwd=tmp_path)
            assert again.returncode == 1, (extra, again.stdout, again.stderr)
            assert again.stderr.strip() == (
                f"error: job faults is already running locally (supervisor pid {supervisor}); "
                f"stop it first with `pipeline stop {file}`"
            )
            assert again.stdout == ""  # not even "run r2 starts" / "resuming run r1"
        # `pipeline deploy` and `start` with the local executor: refused alike, nothing recorded
        # (before, the run was resumed, then ended "failed" while the job went on), and told
        # the stop command `run` is told (before: `pipeline stop`, naming no file)
        for command in ("deploy", "start"):
            again = pipeline(command, str(file), "--executor", "local", cwd=tmp_path)
            assert again.returncode == 1, (command, again.stdout, again.stderr)
            assert again.stderr.strip().endswith(
                f"job faults is already running locally (supervisor pid {supervisor}); "
                f"stop it first with `pipeline stop {file}`"
            ), again.stderr
        listed = pipeline("runs", str(file), "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        runs = json.loads(listed.stdout)["runs"]
        assert [(r["id"], r["state"], r["sessions"]) for r in runs] == [("r1", "running", 1)]
        assert pipeline("stop", str(file), cwd=tmp_path).returncode == 0
        # the next run resumes r1 (deployed locally: one session, not the deploy's and the
        # run's): the files already copied are not read again
        write_files(files, 200, 250)
        deployed = pipeline("deploy", str(file), "--executor", "local", cwd=tmp_path)
        assert deployed.returncode == 0, deployed.stderr
        listed = pipeline("runs", str(file), "--json", cwd=tmp_path)
        runs = json.loads(listed.stdout)["runs"]
        assert [(r["id"], r["sessions"]) for r in runs] == [("r1", 2)]
        wait_for(lambda: len(sink_names(out)) >= 250, timeout=120, what="the new files")
        assert pipeline("stop", str(file), cwd=tmp_path).returncode == 0
    finally:
        kill_run(run_dir)
    names = sink_names(out)
    assert sorted(names) == [f"f{i:05d}.txt" for i in range(250)]
    assert [n for n, c in names.items() if c > 1] == []


def test_a_damaged_pid_in_a_state_file_is_no_process() -> None:
    """A state file whose pid is -1, 0 or not a number names no process: `os.kill(-1, 0)`
    succeeds (it signals every process), so a -1 was taken for a live task, and a stop would
    then have signalled every process of the user."""
    assert pid_alive(os.getpid())
    for damaged in (-1, 0, None, "123", True, 2.5):
        assert not pid_alive(damaged), damaged
