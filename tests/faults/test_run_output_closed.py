"""`pipeline run | head -1`: a foreground run whose reader goes away stops its run cleanly, as
SIGTERM does, recorded `stopped` because its output was closed, with no worker left and no
traceback; it used to end on rich's SystemExit, the run recorded `failed` for "SystemExit: 1"
and its status `lost`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from faults_support import (
    alive,
    core_pipeline,
    env,
    kill_run,
    pipeline,
    read_state,
    wait_for,
    write_files,
)

from helpers import PIPELINE
from leaked_processes import stop_run


def _run_closed_after(tmp_path: Path, lines: int) -> tuple[Path, list[int], str]:
    """A service run (it never ends by itself, nor prints once its workers run) whose stdout
    is closed after `lines` lines, once its workers run; their pids, and its stderr."""
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 5)
    file = core_pipeline(tmp_path, files=files, out=out, watch=True)
    run = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    pids: list[int] = []
    try:
        assert run.stdout is not None
        assert run.stderr is not None
        for _ in range(lines):
            run.stdout.readline()
        if lines:
            wait_for(lambda: len(_worker_pids(run_dir)) == 3, timeout=60, what="the workers")
            pids = _worker_pids(run_dir)
        run.stdout.close()  # as `head` does once it has its lines
        run.wait(timeout=120)
        err = run.stderr.read()
    finally:
        stop_run(run, file, env=env(), cwd=tmp_path)
    return file, pids, err


def _worker_pids(run_dir: Path) -> list[int]:
    state = read_state(run_dir) or {}
    return [u["pid"] for u in state.get("units", []) if u.get("pid")]


def _last_run(file: Path) -> dict:
    listed = pipeline("runs", str(file), "--json", cwd=file.parent)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["runs"][-1]


def _assert_stopped_quietly(file: Path, err: str) -> None:
    """Nothing said on stderr, and the run recorded stopped because its output was closed."""
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    last = _last_run(file)
    assert last["state"] == "stopped", last
    assert "output was closed" in last["message"], last


def test_closing_the_output_of_pipeline_run_stops_its_run(tmp_path: Path) -> None:
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    try:
        file, pids, err = _run_closed_after(tmp_path, lines=1)
        wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="the workers to end")
    finally:
        kill_run(run_dir)
    _assert_stopped_quietly(file, err)
    status = pipeline("status", str(file), "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["status"] == "stopped", status.stdout


def test_closing_the_output_before_the_run_prints_stops_it(tmp_path: Path) -> None:
    # the reader gone before the run's first line: the start itself ends the run
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    try:
        file, _pids, err = _run_closed_after(tmp_path, lines=0)
    finally:
        kill_run(run_dir)
    _assert_stopped_quietly(file, err)
