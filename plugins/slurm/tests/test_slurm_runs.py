"""A Slurm deployment's run, through the `pipeline` command on a real Slurm: a refused `deploy`
or `start` changes no run, a batch deployment that finishes ends its run `complete` with the
workers' counts, and `status`, `logs` and `stop` act on the live deployment rather than on a
finished local run of the same file."""

from __future__ import annotations

import json

from slurm_support import (
    EXAMPLES,
    run_locally,
    run_pipeline,
    runs_of,
    squeue,
    wait_until,
    watching_file,
    watching_text,
)


def _jobs_of(status_json: str) -> list[str]:
    return [i["task_id"] for i in json.loads(status_json)["instances"]]


def test_a_refused_deploy_or_start_changes_no_run(slurm, workdir):
    file = watching_file(workdir, "refused", first_file=True)
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr
    try:
        again = run_pipeline("deploy", str(file), env=env)
        assert again.returncode == 1
        started = run_pipeline("start", str(file), env=env)
        assert started.returncode == 1
        (run,) = runs_of(file, env)
        assert (run["state"], run["sessions"], run["ended"]) == ("running", 1, None)
        assert again.stderr.startswith("error: pipeline refused is already deployed on Slurm")
        # the stop it names is of this file: `pipeline stop` alone looks in the working directory
        assert again.stderr.endswith(f"stop it first with `pipeline stop {file}`\n"), again.stderr
        # refused before the run is touched: not even "resuming run r1" is said
        assert "resuming" not in again.stdout + again.stderr
        assert started.stderr == "error: pipeline refused is already running on Slurm\n"
    finally:
        stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    (run,) = runs_of(file, env)
    assert (run["state"], run["sessions"]) == ("stopped", 1)


def test_a_batch_deployment_that_finishes_ends_its_run_complete_with_the_counts(slurm, workdir):
    (workdir / "files").mkdir()
    for name in ("run-1.txt", "run-2.txt", "run-3.txt"):
        (workdir / "files" / name).write_text((EXAMPLES / "files" / name).read_text())
    file = workdir / "batch.pipeline.yaml"
    example = (EXAMPLES / "files-to-jsonl.pipeline.yaml").read_text()
    file.write_text(
        example.replace(
            'nomad: {datacenters: ["*"], driver: raw_exec}',
            "slurm: {partition: debug, poll_interval: 0.5}",
        )
    )
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), env=env)
    assert deployed.returncode == 0, deployed.stderr

    # nobody asks for the status: the job watcher has the run ended when the jobs are done
    def ended():
        (run,) = runs_of(file, env)
        return run if run["state"] != "running" else None

    run = wait_until("the run to end", ended, timeout=40, every=1)
    assert (run["state"], run["sessions"]) == ("complete", 1)
    assert run["counts"]["sink"]["processed"] == 3
    assert run["counts"]["files"]["outputs"] == 3
    status = run_pipeline("status", str(file), "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "complete"

    # a stop finds nothing to stop, and leaves the deployment and its run as they ended
    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.rstrip().endswith(
        "nothing to stop: the deployment had already ended (complete)"
    ), stopped.stdout
    assert json.loads(run_pipeline("status", str(file), "--json", env=env).stdout)["state"] == (
        "complete"
    )
    (run,) = runs_of(file, env)
    assert (run["state"], run["sessions"], run["counts"]["sink"]["processed"]) == (
        "complete",
        1,
        3,
    )
    # and a start has nothing to do: said in one sentence, without a session of the run
    started = run_pipeline("start", str(file), env=env)
    assert started.returncode == 1
    assert started.stderr.startswith("error: pipeline files-to-jsonl is complete on Slurm")
    assert "nothing to start" in started.stderr
    assert "resuming" not in started.stdout
    assert runs_of(file, env)[0]["sessions"] == 1


def test_status_logs_and_stop_act_on_the_live_deployment_not_a_finished_local_run(slurm, workdir):
    file = watching_file(workdir, "live", first_file=True)
    env = slurm.env
    # a finished local run of the file first (the same units, without watching)
    file.write_text(watching_text("live", watch=False))
    done = run_locally(file)
    assert done.returncode == 0, done.stdout + done.stderr
    file.write_text(watching_text("live"))
    deployed = run_pipeline("deploy", str(file), "--fresh", env=env)
    assert deployed.returncode == 0, deployed.stderr
    try:
        status = run_pipeline("status", str(file), "--json", env=env)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout).get("executor") == "slurm"
        jobs = _jobs_of(status.stdout)
        logs = run_pipeline("logs", str(file), "sink", "--stderr", env=env)
        assert logs.returncode == 0, logs.stderr
        assert "Slurm job" in logs.stdout

        # a local run beside it, even a new one, would write the same results: refused
        local = run_pipeline("run", str(file), "--detach", "--fresh", env=env, cwd=workdir)
        assert local.returncode == 1, local.stdout + local.stderr
        assert local.stderr.startswith("error: pipeline live is deployed on Slurm and still runs")
    finally:
        stopped = run_pipeline("stop", str(file), "--json", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert sorted(json.loads(stopped.stdout)["cancelled"]) == sorted(jobs)
    wait_until(
        "the jobs to end",
        lambda: all(s == "CANCELLED" for s in squeue(jobs, env).values()),
        timeout=30,
    )
    # nothing runs any more: the local run recorded here is what status shows again
    after = run_pipeline("status", str(file), "--json", env=env)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["job"] == "live"  # the local run's state, not Slurm's
    by_id = {r["id"]: (r["executor"], r["state"]) for r in runs_of(file, env)}
    assert by_id == {"r1": ("local", "complete"), "r2": ("slurm", "stopped")}
