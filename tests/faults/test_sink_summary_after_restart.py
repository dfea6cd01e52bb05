"""A sink's summary counts the whole run session, also when its worker was killed mid-run.

Before, `core.jsonl-sink` counted only its last process's lines: after a SIGKILL of its worker,
which the supervisor restarted, the run's summary said `lines_written 2437` for a file holding
all 3000 lines, and `pipeline status` repeated it, as if hundreds of results were lost."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faults_support import (
    core_pipeline,
    env,
    kill_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)

from helpers import PIPELINE

FILES = 600


def _sink_pid(run_dir: Path) -> int | None:
    state = read_state(run_dir) or {}
    for unit in state.get("units", []):
        if unit.get("group") == "sink" and unit.get("pid"):
            return int(unit["pid"])
    return None


def _restarts(run_dir: Path, group: str) -> int:
    state = read_state(run_dir) or {}
    return sum(int(u.get("restarts") or 0) for u in state["units"] if u["group"] == group)


def _run_killing_the_sink(work: Path, count: int) -> tuple[Any, str, str, int, Path, Path]:
    """A run of `count` files whose sink worker is SIGKILLed once it wrote a fifth of them;
    returns (the run, its stdout, stderr, lines written when killed, file, output)."""
    files, out = work / "incoming", work / "out" / "copied.jsonl"
    write_files(files, 0, count)
    file = core_pipeline(work, files=files, out=out)
    run_dir = work / ".pipeline-data" / "runs" / "faults"
    run = subprocess.Popen(
        [PIPELINE, "run", str(file), "--fresh"],
        cwd=work,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _sink_pid(run_dir) is not None, timeout=120, what="the sink's worker")
        wait_for(lambda: len(sink_names(out)) >= count // 5, timeout=120, what="the first lines")
        # read once: a sink already done has no pid in the state, and killpg(0) would kill
        # this test's own process group
        pid, killed_at = _sink_pid(run_dir), count
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # mid-run: the supervisor restarts it
                killed_at = len(sink_names(out))
        stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        kill_run(run_dir)
    assert run.returncode == 0, stderr
    if killed_at < count:
        assert _restarts(run_dir, "sink") >= 1, stderr
    return run, stdout, stderr, killed_at, file, out


@pytest.mark.slow
def test_the_sink_summary_counts_the_lines_of_a_killed_worker(tmp_path: Path) -> None:
    # the kill must land mid-run: a sink that wrote every line before it (a quiet machine
    # copies 600 files in a blink) tested nothing, so the run is made again, longer
    for attempt, count in enumerate((FILES, FILES * 5, FILES * 25)):
        work = tmp_path / f"attempt-{attempt}"
        work.mkdir()
        _, stdout, _, killed_at, file, out = _run_killing_the_sink(work, count)
        if killed_at < count:
            break
    assert killed_at < count, "the sink finished before it was killed: it tested nothing"

    names = sink_names(out)
    lines = out.read_text().splitlines()
    assert (len(names), set(names.values())) == (count, {1})  # every file once
    shown = re.search(r"^sink: .*lines_written (\d+)", stdout, re.M)
    assert shown is not None, stdout
    assert int(shown.group(1)) == len(lines), stdout

    status = pipeline("status", str(file), "--json", cwd=work)
    assert status.returncode == 0, status.stderr
    summaries = json.loads(status.stdout)["summaries"].values()
    [sink] = [s for s in summaries if s.get("file") == str(out.resolve())]
    assert sink["lines_written"] == len(lines), sink
