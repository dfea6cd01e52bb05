"""`pipeline status` and `pipeline stop` of a Slurm deployment whose store no longer holds the
run its jobs were given (a Redis that lost its data, an embedded store moved away) say so, on a
real Slurm, in `start`'s words, and `status` exits 1. `status` showed every unit `not started`
and exited 0 without a word of it, and made the moved store again, empty, when it found the
deployment ended on its own; `stop` cancelled the jobs and recorded no end in silence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ruamel.yaml import YAML
from slurm_support import run_pipeline, runs_of, squeue, wait_until, watching_file, watching_text

from asapo_pipelines_slurm.watch import ALIVE


def _store(workdir: Path, name: str) -> Path:
    """The store the deployment's jobs were given, as the copy they run names it."""
    copy = YAML(typ="safe").load((workdir / f".pipeline-slurm/{name}/pipeline.yaml").read_text())
    return Path(copy["transport"]["embedded"]["path"])


def _jobs(workdir: Path, name: str) -> list[str]:
    state = json.loads((workdir / ".pipeline-slurm" / name / "state.json").read_text())
    return [j for i in state["instances"].values() for j in i["jobs"]]


def _lost(name: str, file: Path, so: str = "") -> str:
    return (
        f"warning: the store no longer holds run r1 of this deployment of pipeline {name} (it "
        f"holds no run of this pipeline: its data was lost or emptied){so}; `pipeline deploy "
        f"--fresh {file}` processes every input again"
    )


def test_status_says_the_store_lost_a_stopped_deployments_run(slurm, workdir):
    env = slurm.env
    file = watching_file(workdir, "gone", first_file=True)
    assert run_pipeline("deploy", str(file), env=env).returncode == 0
    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    store = _store(workdir, "gone")
    shutil.move(store, workdir / "aside")  # the store comes back empty

    shown = run_pipeline("status", str(file), env=env)
    assert shown.returncode == 1, shown.stderr  # an operator must act: exit 1, not 0
    assert shown.stderr.splitlines() == [_lost("gone", file)], shown.stderr
    assert "slurm gone: stopped" in shown.stdout, shown.stdout  # the jobs' part of the table
    assert not store.exists()  # nothing written, not even the store


def test_status_of_a_deployment_that_ended_on_its_own_makes_no_store(slurm, workdir):
    """Found `complete`, the deployment's run is ended by `status` (`settle`): a store that no
    longer holds it was opened to be written, and so made again, empty."""
    env = slurm.env
    file = watching_file(workdir, "batch", first_file=True)
    file.write_text(watching_text("batch", watch=False))
    assert run_pipeline("deploy", str(file), env=env).returncode == 0
    # the watcher records the run's end once the last job ended
    wait_until("the run to end", lambda: runs_of(file, env)[0]["state"] == "complete", 90)
    store = _store(workdir, "batch")
    shutil.move(store, workdir / "aside")

    shown = run_pipeline("status", str(file), env=env)
    assert shown.returncode == 1, shown.stderr
    assert shown.stderr.splitlines() == [_lost("batch", file)], shown.stderr
    assert "slurm batch: complete" in shown.stdout, shown.stdout
    assert not store.exists()


def test_stop_cancels_the_jobs_and_says_the_store_lost_the_run(slurm, workdir):
    env = slurm.env
    file = watching_file(workdir, "lost", first_file=True)
    assert run_pipeline("deploy", str(file), env=env).returncode == 0
    jobs = _jobs(workdir, "lost")
    shutil.move(_store(workdir, "lost"), workdir / "aside")

    stopped = run_pipeline("stop", str(file), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped pipeline lost with the slurm executor" in stopped.stdout, stopped.stdout
    assert stopped.stderr.splitlines() == [_lost("lost", file, ", so no end was recorded")], (
        stopped.stderr
    )
    # what the operator asked for is done
    wait_until("the jobs to end", lambda: not set(squeue(jobs, env).values()) & ALIVE, 30)
    assert runs_of(file, env) == []  # no end recorded, and no new run

    # what the sentence says to do
    fresh = run_pipeline("deploy", "--fresh", str(file), env=env)
    assert fresh.returncode == 0, fresh.stderr
    assert [r["state"] for r in runs_of(file, env)] == ["running"]
    assert run_pipeline("status", str(file), env=env).stderr.count("no longer holds") == 0
