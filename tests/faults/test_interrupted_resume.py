"""Ctrl-C on a resumed run before its workers publish their first status record. The status
streams are the pipeline's: until this session's workers publish, each replica's last record
is the one the run's earlier session (or another run, a reprocess) left. The session's end,
the closing summary and `pipeline status` took those as this session's: the run's counts were
added a second time, and a reprocess's decisions were shown and recorded under the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from faults_support import (
    PIPELINE,
    core_pipeline,
    env,
    pipeline,
    read_state,
    wait_for,
    write_files,
)

from leaked_processes import stop_run


def recorded(store: Path, run_id: str) -> Any:
    """Run `run_id` as the store records it."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    with open_transport({"embedded": {"path": str(store), "create": False}}) as transport:
        return RunStore(transport, "faults").get(run_id)


def interrupted_resume(tmp_path: Path, file: Path) -> str:
    """`pipeline run` again (it resumes r1), stopped with SIGINT as soon as its supervisor has
    started the units of the new session (their workers are still starting); its output.

    The workers are held at interpreter start (a `sitecustomize` on their PYTHONPATH) until
    they are stopped: without that, a SIGINT that came half a second late (a loaded machine)
    found the files worker done with its scan, its first records published (3 duplicates
    skipped), and the session over before the SIGINT a little later still."""
    run_dir = tmp_path / "store" / "runs" / "faults"
    held = tmp_path / "held"
    held.mkdir(exist_ok=True)
    (held / "sitecustomize.py").write_text(
        "import os, sys, time\n"
        "if sys.argv[1:2] == ['worker'] and os.environ.get('NOMAD_ALLOC_ID'):\n"
        "    time.sleep(120)\n"
    )
    path = os.pathsep.join(filter(None, [str(held), os.environ.get("PYTHONPATH")]))
    before = (read_state(run_dir) or {}).get("started")

    def started() -> bool:
        state = read_state(run_dir) or {}
        return state.get("started") != before and any(u.get("pid") for u in state["units"])

    proc = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        cwd=tmp_path,
        env=env(PYTHONPATH=path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(started, timeout=60, what="the resumed session's units to start")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        stop_run(proc, file, env=env(PYTHONPATH=path), cwd=tmp_path)
    assert "resuming run r1" in out, out
    assert proc.returncode == 130, out
    return out


def first_run(tmp_path: Path) -> tuple[Path, Path]:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 3)
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return file, tmp_path / "store"


def test_an_interrupted_resume_adds_nothing_to_the_runs_counts(tmp_path: Path) -> None:
    file, store = first_run(tmp_path)
    before = recorded(store, "r1").counts
    assert before["sink"]["processed"] == 3, before

    interrupted_resume(tmp_path, file)

    [run] = json.loads(pipeline("runs", str(file), "--json", cwd=tmp_path).stdout)["runs"]
    assert (run["state"], run["sessions"]) == ("stopped", 2), run
    # nothing new came: the interrupted session processed nothing, and its end added nothing
    assert run["counts"] == before, run


def test_an_interrupted_resume_shows_none_of_another_runs_results(tmp_path: Path) -> None:
    file, store = first_run(tmp_path)
    other = tmp_path / "reprocessed.jsonl"
    again = pipeline(
        "reprocess", str(file), "--from", "r1", "--set", f"sink.path={other}", cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert recorded(store, "r2").summaries["sink"]["file"] == str(other)
    mine = recorded(store, "r1").summaries

    closing = interrupted_resume(tmp_path, file)
    # the reprocess (r2) wrote the pipeline's status streams last: its sink's summary is not r1's
    assert str(other) not in " ".join(closing.split()), closing
    assert recorded(store, "r1").summaries == mine
    status = pipeline("status", str(file), "--json", cwd=tmp_path)
    document = json.loads(status.stdout)
    assert document["run"] == "r1", document
    sink = document["summaries"].get("sink[0]") or {}
    assert sink.get("file") != str(other), document["summaries"]
