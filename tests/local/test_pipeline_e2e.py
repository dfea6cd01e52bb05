"""End to end: a pipeline file of the core's units compiled to its Nomad job and run by
`pipeline run`, with a worker SIGKILLed mid-run. Needs the pipeline model, the compiler, the
worker and the transport; skipped in an installation without them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import pytest
from local_jobs import pipeline, read_state, wait_for

from helpers import until_it_lands

for module in (
    "asapo_pipelines.pipeline",
    "asapo_pipelines.launchplan.compile",
    "asapo_pipelines.worker",
    "asapo_pipelines.transport",
):
    pytest.importorskip(module)

N_FILES = 400


def write_pipeline(tmp_path: Path, n_files: int = N_FILES) -> Path:
    files = tmp_path / "files"
    files.mkdir()
    for i in range(n_files):
        (files / f"f{i:04d}.txt").write_text(f"file {i}\n")
    path = tmp_path / "e2e.pipeline.yaml"
    # absolute paths: the units resolve relative ones against the delivered copy of the file
    doc = {
        "pipeline": "e2e",
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": str(files)},
                "outputs": {"files": "raw"},
            },
            "copy": {
                "unit": "core.identity",
                "inputs": {"input": "raw"},
                "outputs": {"output": "copied"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(tmp_path / "out" / "copied.jsonl"), "payload": "text"},
                "inputs": {"messages": "copied"},
            },
        },
    }
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def lines(tmp_path: Path) -> list[dict]:
    try:
        text = (tmp_path / "out" / "copied.jsonl").read_text()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in text.splitlines() if x.endswith("}")]


def _run_killing_the_copy(tmp_path: Path, n_files: int) -> tuple[Path, dict, bool]:
    """A detached run of `n_files` whose copy worker is SIGKILLed once the sink has output;
    returns (file, the run's final state, whether the kill reached the worker mid-stream)."""
    file = write_pipeline(tmp_path, n_files)
    started = pipeline("run", str(file), "--detach", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    run_dir = tmp_path / ".pipeline-data" / "runs" / "e2e"

    def copy_pid() -> int | None:
        state = read_state(run_dir) or {}
        return next((u["pid"] for u in state.get("units", []) if u["group"] == "copy"), None)

    pid = wait_for(copy_pid, what="the copy worker")
    # once the sink has something, the copy worker is mid-stream, unless it is done already
    wait_for(lambda: lines(tmp_path), timeout=60, what="the first output")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    state = wait_for(
        lambda: (s := read_state(run_dir)) and s["status"] in ("complete", "failed") and s,
        timeout=90,
        what="the run to end",
    )
    copy = next(u for u in state["units"] if u["group"] == "copy")
    return file, state, copy["exit_codes"][:1] == [-signal.SIGKILL]


def test_core_pipeline_runs_to_completion_through_a_sigkill(tmp_path: Path) -> None:
    # the kill must land mid-stream: a copy worker that was done before it (a quiet machine
    # copies 400 files in a blink) tested nothing, so the run is made again, longer
    work, n_files, (file, state, killed) = until_it_lands(tmp_path, N_FILES, _run_killing_the_copy)
    assert killed, "the copy worker was done before it was killed: it tested nothing"
    assert state["status"] == "complete", state["message"]
    copy = next(u for u in state["units"] if u["group"] == "copy")
    assert copy["exit_codes"] == [-signal.SIGKILL, 0]
    assert copy["restarts"] == 1
    payloads = [line["payload"] for line in lines(work)]
    # nothing lost, nothing twice
    assert sorted(payloads) == sorted(f"file {i}\n" for i in range(n_files))
    shown = pipeline("logs", str(file), "copy", "--stderr", cwd=work)
    assert shown.returncode == 0, shown.stderr
    status = pipeline("status", str(file), "--json", cwd=work)
    assert json.loads(status.stdout)["status"] == "complete"


def test_foreground_run_summary_shows_the_workers_counters(tmp_path: Path) -> None:
    file = write_pipeline(tmp_path)
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "job e2e completed: every task exited 0" in done.stdout
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in done.stdout.splitlines()
        if line.startswith("│")
    }
    # unit, task, state, pid, restarts, exit, processed, rate, errors
    for unit in ("files[0]", "copy[0]", "sink[0]"):
        assert rows[unit][2] == "complete"
        assert rows[unit][6] == str(N_FILES)
        assert rows[unit][8] == "0"
