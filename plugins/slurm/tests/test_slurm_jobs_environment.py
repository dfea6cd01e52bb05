"""`deploy.slurm.python: {venv: ...}` names the environment every job runs. `pipeline deploy`
asks that environment, from the deploying host (it is on the shared filesystem), whether it
can run the pipeline, and refuses in one sentence, submitting nothing, when it cannot. Before
(an operator's audit, P65 on Slurm with an environment lacking the XAS and NeXus plugins),
deploy said "deployed ... 5 Slurm job(s) submitted" and exited 0; every job failed at its
start and was resubmitted until its restarts ran out, shown as "... is not a valid pipeline
file (5 errors):". On a real one-node Slurm, with a real environment holding the core alone
(no asapo-pipelines-slurm, which every worker of a Slurm deployment needs) made with uv."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_support import ROOT, executor, run_pipeline, squeue, watching_file


def _jobs_of(name: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%j"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [job for job in done.stdout.split() if job.startswith(f"{name}.")]


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        pytest.skip("needs uv to make an environment quickly")
    return uv


def _environment(where: Path, *packages: Path) -> Path:
    """A new environment at `where` holding `packages` (editable) and their dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = str(where / "bin" / "python")
    editable = [arg for package in packages for arg in ("-e", str(package))]
    done = subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", python, *editable],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"could not install into a new environment: {done.stderr[-300:]}")
    return where


def test_an_environment_that_is_not_there_is_refused_before_any_job(slurm, workdir):
    venv = workdir / "no-such-env"
    file = watching_file(workdir, "noenv", slurm=f"partition: debug, python: {{venv: {venv}}}")
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    why = (
        f"the Python environment the jobs run ({venv}, deploy.slurm.python.venv) cannot run "
        f"this pipeline: it has no {venv}/bin/pipeline: create it and install the plugins the "
        "pipeline uses"
    )
    # at the venv's line: the last line of the file, `venv:` in its flow mapping
    line = len(file.read_text().splitlines())
    column = file.read_text().splitlines()[-1].index(str(venv)) + 1
    checked = run_pipeline("validate", "--online", str(file), env=slurm.env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert f"{file}:{line}:{column}: error P501 {why}\n" in checked.stdout, checked.stdout
    done = run_pipeline("deploy", str(file), env=slurm.env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == f"error: {file}:{line}:{column}: {why}\n"
    assert "Traceback" not in done.stdout + done.stderr
    assert _jobs_of("noenv", slurm.env) == []


def test_an_environment_that_lost_the_executors_plugin_is_refused_at_start_and_deploy(
    slurm, workdir
):
    venv = _environment(workdir / "env", ROOT, ROOT / "plugins" / "slurm")
    file = watching_file(
        workdir, "coreonly", slurm=f"partition: debug, poll_interval: 0.5, python: {{venv: {venv}}}"
    )
    executor(file)  # registered, so that a failing test leaves no watcher or job behind
    env = slurm.env
    deployed = run_pipeline("deploy", str(file), env=env)  # its jobs run that environment
    assert deployed.returncode == 0, deployed.stderr
    assert run_pipeline("stop", str(file), env=env).returncode == 0
    before = _jobs_of("coreonly", env)
    # someone rebuilt the environment without the executor's plugin, which each worker needs
    # to read the file's deploy.slurm section
    subprocess.run(
        [
            _uv(),
            "pip",
            "uninstall",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "asapo-pipelines-slurm",
        ],
        check=True,
        timeout=120,
    )
    why = (
        f"the Python environment the jobs run ({venv}, deploy.slurm.python.venv) cannot run "
        "this pipeline: its `pipeline validate` says: unknown field 'slurm' in deploy "
        "(allowed: nomad, local); install the plugins the pipeline uses into it "
        f"(`{venv}/bin/pip install ...`)"
    )
    started = run_pipeline("start", str(file), env=env)
    assert started.returncode == 1, started.stdout + started.stderr
    assert started.stderr == f"error: {why}; so nothing was submitted\n"
    # deploy asks through the check `validate --online` makes, located at the venv's line
    done = run_pipeline("deploy", "--fresh", str(file), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.fullmatch(rf"error: {re.escape(str(file))}:\d+:\d+: {re.escape(why)}\n", done.stderr)
    assert "Traceback" not in started.stderr + done.stderr
    assert _jobs_of("coreonly", env) == before
    assert "PENDING" not in squeue(before, env).values()
