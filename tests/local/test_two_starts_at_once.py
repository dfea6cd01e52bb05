"""Two operators start the same stopped run at once: the one refused is told the run is being
started, not the pid of the supervisor that ran it before and is gone. The start that won
holds the run directory's lock before its supervisor has written its pid (it records its
session first); here the test process holds that lock, as that start does. Real `pipeline`
commands, a real embedded store, a real lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from test_which_run import NO_NOMAD, detach, write_pipeline

from helpers import run_pipeline


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
