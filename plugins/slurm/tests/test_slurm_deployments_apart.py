"""Deployments of pipelines with one `pipeline:` name stay apart, on a real Slurm: `stop` in one
folder cancels its own jobs only, not another folder's; two files of one name in one folder
(each with its own store) get a state directory each, as their local runs get a run directory
each; a `state_dir` that holds another file's deployment is refused."""

from __future__ import annotations

import json
from pathlib import Path

from slurm_support import run_pipeline, runs_of, squeue, watching_text


def _write(folder: Path, file_name: str, *, store: str = "", slurm: str = "") -> Path:
    """A watching pipeline `twin` in `folder`, with its own embedded store when `store`."""
    (folder / "files").mkdir(parents=True, exist_ok=True)
    (folder / "files" / "a.txt").write_text("first\n")
    text = watching_text("twin", slurm=f"partition: debug, poll_interval: 0.5{slurm}")
    if store:
        name, rest = text.split("\n", 1)
        text = f"{name}\ntransport: {{embedded: {{path: {store}}}}}\n{rest}"
    file = folder / file_name
    file.write_text(text)
    return file


def _status(file: Path, env: dict[str, str]) -> dict:
    done = run_pipeline("status", str(file), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _deploy(file: Path, env: dict[str, str]) -> list[str]:
    done = run_pipeline("deploy", str(file), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return sorted(json.loads(done.stdout)["jobs"].values())


def _stop(file: Path, env: dict[str, str]) -> list[str]:
    done = run_pipeline("stop", str(file), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return sorted(json.loads(done.stdout)["cancelled"])


def test_stop_in_one_folder_leaves_another_folders_deployment_of_the_same_name(slurm, workdir):
    env = slurm.env
    a = _write(workdir / "a", "twin.pipeline.yaml")
    b = _write(workdir / "b", "twin.pipeline.yaml")
    a_jobs = _deploy(a, env)
    try:
        b_jobs = _deploy(b, env)
        try:
            assert _stop(a, env) == a_jobs
            # B's jobs were not cancelled: still running, none restarted by B's watcher
            assert set(squeue(b_jobs, env).values()) == {"RUNNING"}
            status = _status(b, env)
            assert status["state"] == "running"
            assert {(i["state"], i["restarts"]) for i in status["instances"]} == {("running", 0)}
        finally:
            b_stopped = _stop(b, env)
        assert b_stopped == b_jobs
    finally:
        _stop(a, env)


def test_two_files_of_one_name_in_one_folder_are_deployed_apart(slurm, workdir):
    env = slurm.env
    c = _write(workdir, "c.pipeline.yaml", store=".data-c")
    g = _write(workdir, "g.pipeline.yaml", store=".data-g")
    c_jobs = _deploy(c, env)
    try:
        g_jobs = _deploy(g, env)
        try:
            c_dir, g_dir = (Path(_status(f, env)["extra"]["state_dir"]) for f in (c, g))
            assert c_dir == workdir / ".pipeline-slurm" / "twin"
            assert g_dir.parent == c_dir.parent
            assert g_dir.name.startswith("twin@g-")
            assert _stop(c, env) == c_jobs
            # g's deployment runs on, its own state untouched by c's stop
            status = _status(g, env)
            assert status["state"] == "running"
            assert sorted(i["task_id"] for i in status["instances"]) == g_jobs
            assert set(squeue(g_jobs, env).values()) == {"RUNNING"}
        finally:
            assert _stop(g, env) == g_jobs
    finally:
        _stop(c, env)
    (run,) = runs_of(g, env)
    assert (run["state"], run["sessions"]) == ("stopped", 1)


def test_a_state_dir_holding_another_files_deployment_is_refused(slurm, workdir):
    env = slurm.env
    shared = ", state_dir: shared-state"
    c = _write(workdir, "c.pipeline.yaml", store=".data-c", slurm=shared)
    g = _write(workdir, "g.pipeline.yaml", store=".data-g", slurm=shared)
    _deploy(c, env)
    _stop(c, env)
    refused = run_pipeline("deploy", str(g), env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stderr == (
        f"error: the Slurm state directory {workdir / 'shared-state'} holds the deployment of "
        f"{c}, so {g} cannot use it: give one of the two files another `state_dir` in its "
        "`deploy.slurm` section\n"
    )
    assert runs_of(g, env) == []  # refused before anything was recorded
    assert _status(c, env)["state"] == "stopped"  # c's deployment is still c's
