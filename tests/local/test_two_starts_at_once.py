"""Two operators start the same stopped run at once: the one refused is told the run is being
started, not the pid of the supervisor that ran it before and is gone. The start that won
holds the run directory's lock before its supervisor has written its pid (it records its
session first); here the test process holds that lock, as that start does. Real `pipeline`
commands, a real embedded store, a real lock."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_which_run import NO_NOMAD, detach, stopped_after, write_pipeline

from helpers import run_pipeline

__all__ = ["stopped_after"]  # the fixture, used here


def test_a_start_refused_while_another_start_holds_the_run_names_no_gone_supervisor(
    tmp_path: Path,
) -> None:
    file = write_pipeline(tmp_path / "fe.pipeline.yaml", "fe")
    first = detach(file)
    stopped = run_pipeline("stop", str(file), env=NO_NOMAD)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    lock = os.open(Path(first["run_dir"]) / "supervisor.lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other operator's start, recording its session
        refused = run_pipeline("run", str(file), "--detach", env=NO_NOMAD)
    finally:
        os.close(lock)
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: job fe is already running locally (it is being started: its supervisor pid "
        f"is not known yet); stop it first with `pipeline stop {file}`\n"
    ), refused.stderr
    assert str(first["pid"]) not in refused.stdout + refused.stderr


def test_a_start_refused_by_another_files_start_names_that_file(tmp_path: Path) -> None:
    """Two files of one `pipeline:` name in one folder start at the same moment: both take
    the run directory `<data>/runs/<job>`, neither's state being written yet to set them
    apart. The refused one was told to `pipeline stop` its own file, which went to the Nomad
    its `deploy:` section names, while the run holding the name was the other file's local
    one. The test process holds the start as the winner's `pipeline run` does (its
    `StartLock`, the real lock and what it records)."""
    from asapo_pipelines.local.control import StartLock
    from asapo_pipelines.local.target import resolve

    winner = write_pipeline(tmp_path / "b.pipeline.yaml", "fe")
    loser = write_pipeline(tmp_path / "a.pipeline.yaml", "fe", nomad=True)
    run_dir = resolve(str(winner), None, None).run_dir
    assert resolve(str(loser), None, None).run_dir == run_dir  # nothing recorded there yet
    start = StartLock("fe", run_dir, str(winner), str(winner))
    try:
        refused = run_pipeline("run", str(loser), "--detach", env=NO_NOMAD)
    finally:
        start.release()
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr == (
        f"error: job fe is already running locally from {winner} (it is being started: its "
        f"supervisor pid is not known yet); stop it first with `pipeline stop {winner}`\n"
    ), refused.stderr


def _shared_run_dir(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two files of `pipeline: fe` in one folder (the winner, and the loser whose run
    directory was resolved before the winner's supervisor wrote its state: the same one)."""
    from asapo_pipelines.local.target import resolve

    winner = write_pipeline(tmp_path / "b.pipeline.yaml", "fe")
    loser = write_pipeline(tmp_path / "a.pipeline.yaml", "fe")
    run_dir = resolve(str(winner), None, None).run_dir
    assert resolve(str(loser), None, None).run_dir == run_dir  # nothing recorded there yet
    return winner, loser, run_dir


def test_a_deploy_refused_by_another_files_run_names_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped_after: list[tuple[str, ...]]
) -> None:
    """`pipeline deploy` of the loser resolved its run directory while nothing was recorded
    there; by the time it asked whether a supervisor runs there, the winner's did. The refusal
    told it to `pipeline stop` without naming the file, which stopped nothing of the winner's.
    The deploy is made as the command makes it, in this process, to hold it between its two
    steps; the winner is a real `pipeline run --detach`."""
    from asapo_pipelines.cli.executors import executor_for
    from asapo_pipelines.local.errors import LocalRunError

    monkeypatch.setenv("NOMAD_ADDR", NO_NOMAD["NOMAD_ADDR"])
    winner, loser, run_dir = _shared_run_dir(tmp_path)
    executor, _ = executor_for("deploy", str(loser), "local", {})
    assert executor is not None
    stopped_after.append((str(winner),))
    state = detach(winner)
    assert Path(state["run_dir"]) == run_dir
    with pytest.raises(LocalRunError) as refused:
        executor.refuse("deploy")
    assert refused.value.message == (
        f"job fe is already running locally from {winner} (supervisor pid {state['pid']}); "
        f"stop it first with `pipeline stop {winner}`"
    )


def test_a_supervisor_refused_by_another_files_supervisor_names_that_file(
    tmp_path: Path, stopped_after: list[tuple[str, ...]]
) -> None:
    """A detached supervisor started for the loser finds the run directory's lock taken by the
    winner's supervisor (started between the loser's look and its supervisor's start): the
    error it logs, which `pipeline run --detach` relays, named no file either. A real
    supervisor process, as `pipeline run --detach` starts it."""
    winner, loser, run_dir = _shared_run_dir(tmp_path)
    stopped_after.append((str(winner),))
    state = detach(winner)
    assert Path(state["run_dir"]) == run_dir
    refused = subprocess.run(
        [
            *(sys.executable, "-m", "asapo_pipelines.local.supervise", str(run_dir)),
            *("--pipeline-file", str(loser)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **NO_NOMAD},
        check=False,
    )
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout.splitlines()[-1] == (
        f"error: job fe is already running locally from {winner} (supervisor pid "
        f"{state['pid']}); stop it first with `pipeline stop {winner}`"
    ), refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    # `pipeline run --detach`'s own look, just before it starts the supervisor, says the same
    from asapo_pipelines.local.control import start_detached
    from asapo_pipelines.local.errors import LocalRunError

    job = json.loads((run_dir / "job.json").read_text())
    with pytest.raises(LocalRunError) as looked:
        start_detached(job, run_dir, pipeline_file=str(loser), shown="a.pipeline.yaml")
    assert looked.value.message == refused.stdout.splitlines()[-1].removeprefix("error: ")
