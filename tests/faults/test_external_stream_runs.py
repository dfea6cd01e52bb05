"""A pipeline that reads another pipeline's output (an external stream) is a service: it runs
until stopped. Before, its workers ended as soon as that stream was finished and read, exited
0, were restarted again and again, and the run ended `failed` ("exited with code 0 after 5
restarts ... its last error: ... INFO sink finished") although everything was processed."""

from __future__ import annotations

import json
import time
from pathlib import Path

from faults_support import (
    core_pipeline,
    kill_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)


def reader_pipeline(directory: Path, source: str, out: Path) -> Path:
    """`ext`: a sink reading `source`, a data source another pipeline wrote (external)."""
    doc = {
        "pipeline": "ext",
        "transport": {"embedded": {"path": "store"}},
        "streams": {source: {"external": True}},
        "units": {
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(out)},
                "inputs": {"messages": source},
            }
        },
    }
    path = directory / "ext.pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    return path


def test_a_pipeline_reading_a_finished_external_stream_waits_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    files, copied = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 20)
    src = core_pipeline(tmp_path, files=files, out=copied, store="store", name="src")
    done = pipeline("run", str(src), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(sink_names(copied)) == 20

    out = tmp_path / "out" / "ext.jsonl"
    ext = reader_pipeline(tmp_path, "src.r1.copied", out)
    run_dir = tmp_path / "store" / "runs" / "ext"  # the data directory holds the store
    try:
        started = pipeline("run", str(ext), "--detach", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        wait_for(lambda: len(sink_names(out)) == 20, timeout=60, what="the 20 messages")
        # the stream is finished and read: the sink waits for more instead of exiting (it
        # was restarted 5 s after each exit before, and failed for good after 5 restarts)
        time.sleep(8)
        [sink] = read_state(run_dir)["units"]
        assert (sink["state"], sink["restarts"], sink["exit_codes"]) == ("running", 0, [])
        status = pipeline("status", str(ext), "--json", cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["status"] == "running"

        stopped = pipeline("stop", str(ext), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        kill_run(run_dir)
    listed = pipeline("runs", str(ext), "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)["runs"]
    assert run["state"] == "stopped"
    assert run["counts"]["sink"]["processed"] == 20
    assert run["counts"]["sink"]["errors"] == 0
    assert sorted(sink_names(out)) == [f"f{i:05d}.txt" for i in range(20)]
