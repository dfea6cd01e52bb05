"""`pipeline stop` and `pipeline start` of a Slurm deployment, on a real Slurm: `start` gives the
run a new session with every unit, so that a batch deployment stopped after its source was done
still ends `complete`; a `start` right after a `stop` finds no job of the deployment still
completing; a `stop` that finds the jobs of a batch deployment ended unseen (no watcher)
records the deployment `complete`, and a `start` of a complete deployment has nothing to do; a
`start` after the watcher died does not run again a batch source whose job had exited 0, nor
one whose job had exited with a configuration error: that one fails, as the watcher fails it
(with `--json`, after its result document), and a `stop` records it `failed`, not `stopped`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from slurm_support import (
    EXAMPLES,
    executor,
    run_pipeline,
    runs_of,
    squeue,
    wait_until,
    watching_file,
)

import asapo_pipelines_slurm.executor as slurm_executor
from asapo_pipelines.sdk import ExecutorStatus
from asapo_pipelines_slurm.executor import SlurmExecutor
from asapo_pipelines_slurm.watch import ALIVE

#: files -> pass -> sink, a batch pipeline; `slurm` is the inside of its deploy mapping
BATCH = """\
pipeline: {name}
units:
  files:
    unit: core.files
    params: {{directory: files/, pattern: "*.txt"}}
    outputs: {{files: raw}}
  pass:
    unit: core.identity
    inputs: {{input: raw}}
    outputs: {{output: checked}}
  sink:
    unit: core.jsonl-sink
    params: {{path: results/out.jsonl, payload: text}}
    inputs: {{messages: checked}}
deploy:
  slurm: {{partition: debug, poll_interval: 0.5{slurm}}}
"""


def _batch(workdir: Path, name: str, slurm: str = "") -> Path:
    (workdir / "files").mkdir()
    for text in ("run-1.txt", "run-2.txt", "run-3.txt"):
        (workdir / "files" / text).write_text((EXAMPLES / "files" / text).read_text())
    file = workdir / f"{name}.pipeline.yaml"
    file.write_text(BATCH.format(name=name, slurm=slurm))
    return file


def _status(file: Path, env: dict[str, str]) -> dict:
    done = run_pipeline("status", str(file), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _instances(file: Path, env: dict[str, str]) -> dict[str, dict]:
    return {i["unit"]: i for i in _status(file, env)["instances"]}


def _begin_now(jobs: list[str], env: dict[str, str]) -> None:
    """Let jobs submitted with a far --begin start now."""
    for job in jobs:
        subprocess.run(
            ["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True, timeout=30
        )


def _deployed_held(file: Path, env: dict[str, str]) -> dict[str, str]:
    """`pipeline deploy FILE` of a file whose jobs wait for a far start time (`_begin_now`
    lets each go), so that the test decides which unit runs when: instance key -> job id."""
    deployed = run_pipeline("deploy", str(file), "--wait", "0", "--json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    return dict(json.loads(deployed.stdout)["jobs"])


def _ended_unwatched(workdir: Path, jobs: dict[str, str], final: str, env: dict[str, str]) -> str:
    """Kill the watcher of a deployment held by `_deployed_held` (its host rebooted), then let
    the source's job run until squeue says `final`: its job id."""
    state = json.loads(next(workdir.rglob("state.json")).read_text())
    os.kill(state["watcher_pid"], signal.SIGKILL)
    source = jobs["files-0"]
    _begin_now([source], env)
    wait_until(
        f"the source's job to end {final}",
        lambda: squeue([source], env).get(source) == final,
        timeout=90,
        every=1,
    )
    return source


def _config_error_unwatched(
    workdir: Path, name: str, env: dict[str, str]
) -> tuple[Path, SlurmExecutor, dict[str, str], str]:
    """A held batch deployment (`_deployed_held`) whose source's job, run while no watcher
    looked, exited 78: its directory was gone. (file, its executor, key -> job id, the
    source's job id); the executor is registered, so a failing test leaves nothing behind."""
    file = _batch(workdir, name, slurm=', extra_options: ["--begin=now+3600"]')
    ex = executor(file)
    jobs = _deployed_held(file, env)
    (workdir / "files").rename(workdir / "moved")
    return file, ex, jobs, _ended_unwatched(workdir, jobs, "FAILED", env)


def _run_ended(file: Path, env: dict[str, str]) -> dict:
    """The file's one run, once it has ended."""

    def ended() -> dict | None:
        (run,) = runs_of(file, env)
        return run if run["state"] != "running" else None

    return dict(wait_until("the run to end", ended, timeout=120, every=1))


def _all_running(ex: SlurmExecutor) -> ExecutorStatus | None:
    """The executor's status once every instance runs, else None."""
    status = ex.status()
    return status if {i.state for i in status.instances} == {"running"} else None


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_batch_deployment_stopped_after_its_source_was_done_ends_complete_when_started(
    slurm, workdir
):
    file = _batch(workdir, "resumed", slurm=', extra_options: ["--begin=now+3600"]')
    env = slurm.env
    jobs = _deployed_held(file, env)
    # the source and the sink run; the processor between them never does in this session
    _begin_now([jobs["files-0"], jobs["sink-0"]], env)
    wait_until(
        "the source to complete and the sink to run",
        lambda: (
            [_instances(file, env)[u]["state"] for u in ("files", "sink")]
            == ["complete", "running"]
        ),
        timeout=90,
        every=1,
    )
    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr

    started = run_pipeline("start", str(file), "--wait", "0", env=env)
    assert started.returncode == 0, started.stderr
    assert "3 Slurm job(s) submitted again" in started.stdout, started.stdout
    _begin_now([i["task_id"] for i in _instances(file, env).values()], env)
    run = _run_ended(file, env)
    assert (run["state"], run["sessions"]) == ("complete", 2), run
    assert run["counts"]["sink"]["processed"] == 3
    assert run["counts"]["files"]["outputs"] == 3  # each file sent once over both sessions
    payloads = [json.loads(line)["payload"] for line in _lines(workdir / "results/out.jsonl")]
    assert sorted(payloads) == sorted(
        (EXAMPLES / "files" / f"run-{i}.txt").read_text() for i in (1, 2, 3)
    )
    assert _status(file, env)["state"] == "complete"


def test_start_right_after_stop_runs_every_unit_again(slurm, workdir):
    file = watching_file(workdir, "quick", first_file=True)
    env = slurm.env
    out = workdir / "results" / "out.jsonl"
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr
    try:
        wait_until("the first file at the sink", lambda: len(_lines(out)) == 1, timeout=60)
        before = [i["task_id"] for i in _instances(file, env).values()]
        # Slurm takes a while to end a cancelled job (it is COMPLETING meanwhile)
        with slurm.slow_completion(5):
            stopped = run_pipeline("stop", str(file), env=env)
            assert stopped.returncode == 0, stopped.stderr
            started = run_pipeline("start", str(file), env=env)
        assert started.returncode == 0, started.stderr
        assert "2 Slurm job(s) submitted again" in started.stdout, started.stdout
        shown = _instances(file, env)
        assert {u: i["state"] for u, i in shown.items()} == {"files": "running", "sink": "running"}
        assert not {i["task_id"] for i in shown.values()} & set(before)
        # the stopped deployment's jobs had ended before their successors started
        assert not set(squeue(before, env).values()) & ALIVE

        (workdir / "files" / "b.txt").write_text("second\n")
        wait_until("the new file at the sink", lambda: len(_lines(out)) == 2, timeout=60)
        (run,) = runs_of(file, env)
        assert (run["state"], run["sessions"]) == ("running", 2)
    finally:
        stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr


def test_start_waits_for_the_jobs_a_stop_left_completing(slurm, workdir, monkeypatch):
    from slurm_support import executor

    file = watching_file(workdir, "completing", first_file=True)
    ex = executor(file)
    ex.deploy(wait=30)
    before = [i.task_id for i in ex.status().instances]
    # a stop that does not wait for Slurm to end its jobs (as when Slurm takes longer than
    # the stop's bound): the jobs are still completing when `start` comes
    with slurm.slow_completion(5):
        monkeypatch.setattr(slurm_executor, "GONE_TIMEOUT", 0.0)
        stopped = ex.stop()
        monkeypatch.undo()
        assert sorted(stopped["cancelled"]) == sorted(before)
        assert sorted(stopped["still_completing"]) == sorted(before)
        assert set(squeue(before, slurm.env).values()) == {"COMPLETING"}
        ex.start(wait=30)
        # asked at once, before the old jobs' epilog is over for any other reason: start
        # returned only once Slurm had ended them
        assert not set(squeue(before, slurm.env).values()) & ALIVE
    # start returns once the watcher has seen each new job placed, which on a loaded machine
    # may still read CONFIGURING (slurmd launching it) or PENDING past the wait: waited for.
    # A new worker that died meanwhile is restarted by the watcher, which the restarts show.
    after = wait_until("the new jobs to run", lambda: _all_running(ex), timeout=60, every=0.5)
    assert not {i.task_id for i in after.instances} & set(before)
    # the watcher's log says how a new job that was restarted had ended, and why
    said = ex.layout.watcher_log.read_text()
    assert [i.restarts for i in after.instances] == [0, 0], f"{after}\n{said}"


def test_stop_of_a_batch_deployment_whose_jobs_ended_unseen_records_it_complete(slurm, workdir):
    file = _batch(workdir, "unseen")
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), "--wait", "0", "--json", env=env)
    assert deployed.returncode == 0, deployed.stderr
    jobs = sorted(json.loads(deployed.stdout)["jobs"].values())
    state = json.loads(next(workdir.rglob("state.json")).read_text())
    # the watcher dies (its host rebooted) while the workers finish their work
    os.kill(state["watcher_pid"], signal.SIGKILL)
    wait_until(
        "the jobs to complete",
        lambda: set(squeue(jobs, env).values()) == {"COMPLETED"},
        timeout=90,
        every=1,
    )
    # status says so in the executor's words, not Slurm's
    shown = _instances(file, env)
    assert {u: i["state"] for u, i in shown.items()} == dict.fromkeys(
        ("files", "pass", "sink"), "complete"
    )
    assert shown["sink"]["detail"] == f"job {shown['sink']['task_id']} ended COMPLETED"

    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.rstrip().endswith(
        "nothing to stop: the deployment had already ended (complete)"
    ), stopped.stdout
    (run,) = runs_of(file, env)
    assert (run["state"], run["sessions"]) == ("complete", 1)
    assert run["counts"]["sink"]["processed"] == 3

    # nothing to start: said in one sentence, and the run gets no session
    started = run_pipeline("start", str(file), env=env)
    assert started.returncode == 1
    assert started.stderr.startswith("error: pipeline unseen is complete on Slurm"), started.stderr
    assert "nothing to start" in started.stderr
    assert len(started.stderr.strip().splitlines()) == 1
    (run,) = runs_of(file, env)
    assert (run["state"], run["sessions"]) == ("complete", 1)


def test_start_after_the_watcher_died_leaves_a_source_that_finished_unwatched_complete(
    slurm, workdir
):
    file = _batch(workdir, "unwatched", slurm=', extra_options: ["--begin=now+3600"]')
    env = slurm.env
    jobs = _deployed_held(file, env)
    # the watcher dies (its host rebooted); then the source sends its files and exits 0
    source = _ended_unwatched(workdir, jobs, "COMPLETED", env)

    started = run_pipeline("start", str(file), "--wait", "0", env=env)
    assert started.returncode == 0, started.stderr
    assert "0 Slurm job(s) submitted again" in started.stdout, started.stdout
    # one pair of brackets: the job's end is said inside them ("(exit code 0))" read badly)
    assert f"files-0 (job {source} ended COMPLETED with exit code 0)" in started.stdout
    assert "))" not in started.stdout, started.stdout
    shown = _instances(file, env)
    # no new job for the source, and no restart counted: it had finished
    assert (shown["files"]["state"], shown["files"]["task_id"]) == ("complete", source), shown
    assert shown["files"]["restarts"] == 0
    assert json.loads(next(workdir.rglob("state.json")).read_text())["instances"]["files-0"][
        "jobs"
    ] == [source]

    # the rest of the pipeline goes on in the same session and reads what the source sent
    _begin_now([jobs["pass-0"], jobs["sink-0"]], env)
    run = _run_ended(file, env)
    assert (run["state"], run["sessions"]) == ("complete", 1), run
    assert run["counts"]["files"]["outputs"] == 3
    assert run["counts"]["sink"]["processed"] == 3


def test_start_after_the_watcher_died_fails_a_source_that_hit_a_config_error_unwatched(
    slurm, workdir
):
    """A worker's exit 78 (its configuration cannot work: here its directory is gone) while
    no watcher looked: `start` fails the unit as the watcher would have, with the worker's
    reason, and submits nothing. Before, it resubmitted the source, to fail again, and said
    "1 Slurm job(s) submitted again"."""
    env = slurm.env
    file, ex, _, source = _config_error_unwatched(workdir, "unwatchedbad", env)

    started = run_pipeline("start", str(file), "--wait", "0", env=env)
    assert started.returncode == 1, started.stdout + started.stderr
    assert "Traceback" not in started.stderr
    # the run is not said to go on: its error is the one thing to read
    assert started.stdout == "", started.stdout
    (line,) = started.stderr.splitlines()
    assert line.startswith(
        f"error: unit files replica 0 of pipeline unwatchedbad failed: job {source} ended "
        "FAILED with exit code 78: "
    ), line
    assert "directory files does not exist" in line, line
    assert line.endswith("so the deployment's other 2 job(s) were cancelled"), line
    status = ex.status()
    assert status.state == "failed"
    shown = {i.unit: i for i in status.instances}
    # no new job for the source and no restart counted; the other units were stopped
    assert (shown["files"].state, shown["files"].task_id) == ("failed", source), shown
    assert shown["files"].restarts == 0
    assert {shown["pass"].state, shown["sink"].state} == {"stopped"}, shown
    assert json.loads(next(workdir.rglob("state.json")).read_text())["instances"]["files-0"][
        "jobs"
    ] == [source]
    run = _run_ended(file, env)
    assert run["state"] == "failed", run


def test_start_json_of_a_source_that_hit_a_config_error_unwatched_prints_a_result(slurm, workdir):
    """`start --json` on the same path prints a result document naming the failed unit and
    why (as `restarting` names a restarted one), and nothing else on stdout, and still exits 1
    with the sentence on stderr. Before, stdout was empty: the error was all it said."""
    env = slurm.env
    file, ex, _, source = _config_error_unwatched(workdir, "unwatchedjson", env)

    started = run_pipeline("start", str(file), "--wait", "0", "--json", env=env)
    assert started.returncode == 1, started.stdout + started.stderr
    assert "Traceback" not in started.stderr
    result = json.loads(started.stdout)  # the document alone
    assert set(result["failed"]) == {"files-0"}, result
    assert result["failed"]["files-0"].startswith(
        f"job {source} ended FAILED with exit code 78: "
    ), result
    assert "directory files does not exist" in result["failed"]["files-0"], result
    assert result["submitted"] == [], result
    assert result["state"] == "failed", result
    error = started.stderr.splitlines()[-1]
    assert error == f"error: {result['message']}", started.stderr
    assert error.startswith("error: unit files replica 0 of pipeline unwatchedjson failed: ")
    assert error.endswith("so the deployment's other 2 job(s) were cancelled"), error
    assert ex.status().state == "failed"
    assert _run_ended(file, env)["state"] == "failed"


def test_stop_records_a_unit_whose_job_had_exited_78_before_the_stop_failed(slurm, workdir):
    """A worker's exit 78 (its directory is gone) while no watcher looked, then `pipeline
    stop`: that unit is `failed` with the worker's reason, as the watcher would have judged
    it, the units whose jobs the stop cancelled `stopped`; the stop says so and exits 0, and
    the run ends `failed`. Before, every unit read `stopped` and so did the run."""
    env = slurm.env
    file, ex, jobs, source = _config_error_unwatched(workdir, "stopbad", env)

    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Traceback" not in stopped.stderr
    said = stopped.stdout
    others = sorted(j for k, j in jobs.items() if k != "files-0")
    assert f"2 Slurm job(s) cancelled ({', '.join(others)})" in said, said
    assert f"1 had already ended ({source})" in said, said
    assert (
        f"unit files replica 0 had failed before the stop: job {source} ended FAILED with "
        "exit code 78: "
    ) in said, said
    assert "directory files does not exist" in said, said
    status = ex.status()
    shown = {i.unit: i for i in status.instances}
    assert shown["files"].state == "failed", shown
    assert "directory files does not exist" in shown["files"].detail
    assert {shown["pass"].state, shown["sink"].state} == {"stopped"}, shown
    assert shown["pass"].detail == "cancelled by pipeline stop"
    assert status.state == "failed"
    (run,) = runs_of(file, env)
    assert run["state"] == "failed", run
    assert "directory files does not exist" in run["message"], run
