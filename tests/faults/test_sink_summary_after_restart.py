"""A sink's summary counts the whole run session, also when its worker was killed mid-run.

Before, `core.jsonl-sink` counted only its last process's lines: after a SIGKILL of its worker,
which the supervisor restarted, the run's summary said `lines_written 2437` for a file holding
all 3000 lines, and `pipeline status` repeated it, as if hundreds of results were lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

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


@pytest.mark.slow
def test_the_sink_summary_counts_the_lines_of_a_killed_worker(tmp_path: Path) -> None:
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, FILES)
    file = core_pipeline(tmp_path, files=files, out=out)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    run = subprocess.Popen(
        [PIPELINE, "run", str(file), "--fresh"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: _sink_pid(run_dir) is not None, timeout=120, what="the sink's worker")
        wait_for(lambda: len(sink_names(out)) >= FILES // 5, timeout=120, what="the first lines")
        os.killpg(_sink_pid(run_dir) or 0, signal.SIGKILL)  # mid-run: the supervisor restarts it
        killed_at = len(sink_names(out))
        stdout, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        kill_run(run_dir)
    assert run.returncode == 0, stderr
    assert killed_at < FILES, "the sink finished before it was killed: it tested nothing"
    assert _restarts(run_dir, "sink") >= 1, stderr

    names = sink_names(out)
    lines = out.read_text().splitlines()
    assert (len(names), set(names.values())) == (FILES, {1})  # every file once
    shown = re.search(r"^sink: .*lines_written (\d+)", stdout, re.M)
    assert shown is not None, stdout
    assert int(shown.group(1)) == len(lines), stdout

    status = pipeline("status", str(file), "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    summaries = json.loads(status.stdout)["summaries"].values()
    [sink] = [s for s in summaries if s.get("file") == str(out.resolve())]
    assert sink["lines_written"] == len(lines), sink
