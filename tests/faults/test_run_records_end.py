"""However a `pipeline run` session ends, its run's record ends with it, truthfully:

- a session whose supervisor was SIGKILLed (its orphaned workers finished the job) was never
  ended, and the next session's end recorded `complete, 0 processed`: its counts are the
  lost session's workers' last status records, recorded when the next start ends it `lost`;
- SIGTERM or SIGHUP while `pipeline run` starts killed it silently (exit -15, -1) and left the
  run `running` for ever: they stop it as Ctrl-C does, and the run ends `stopped`;
- a detached supervisor whose run directory was deleted left the run `running` for ever: the
  run ends `failed` with the sentence that went to its (deleted) log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from faults_support import (
    alive,
    core_pipeline,
    env,
    kill_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)

from asapo_pipelines.runs import RunStore
from asapo_pipelines.transport import open_transport

from helpers import PIPELINE, until_it_lands


def runs_of(file: Path) -> dict[str, dict]:
    listed = pipeline("runs", str(file), "--json", cwd=file.parent)
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r for r in json.loads(listed.stdout)["runs"]}


def _run_losing_the_supervisor(work: Path, count: int) -> tuple[Path, Path, bool]:
    """A detached run of `count` files whose supervisor is SIGKILLed once the sink has output;
    returns (the file, the sink's output, whether the kill landed while the run went on)."""
    files, out = work / "incoming", work / "out" / "copied.jsonl"
    write_files(files, 0, count)
    file = core_pipeline(work, files=files, out=out)
    run_dir = work / ".pipeline-data" / "runs" / "faults"
    try:
        assert pipeline("run", str(file), "--detach", cwd=work).returncode == 0
        wait_for(lambda: len(sink_names(out)) >= 1, timeout=60, what="the first output")
        state = read_state(run_dir)
        try:
            os.kill(state["pid"], signal.SIGKILL)  # the workers go on without their supervisor
        except ProcessLookupError:
            return file, out, False  # the run was over
        wait_for(lambda: not alive(state["pid"]), timeout=30, what="the supervisor to die")
        if runs_of(file)["r1"]["state"] != "running":
            return file, out, False  # it had ended the run before the kill landed
        orphans = [u["pid"] for u in read_state(run_dir)["units"] if u["pid"]]
        wait_for(lambda: not any(alive(p) for p in orphans), timeout=120, what="the orphans to end")
    finally:
        kill_run(run_dir)
    return file, out, True


def test_what_orphans_of_a_killed_supervisor_processed_counts_in_the_run(tmp_path: Path) -> None:
    # the kill must land while the run goes on: a quiet machine copies the 300 files less than
    # a second after the sink's first line and the supervisor ends the run, so a kill that came
    # too late makes the run again, longer
    work, count, (file, out, lost_mid_run) = until_it_lands(
        tmp_path, 300, _run_losing_the_supervisor
    )
    assert lost_mid_run, "the run ended before its supervisor was killed: it tested nothing"
    run_dir = work / ".pipeline-data" / "runs" / "faults"
    try:
        assert len(sink_names(out)) == count  # the orphans finished the job
        assert runs_of(file)["r1"]["state"] == "running"  # nobody ended the lost session

        again = pipeline("run", str(file), cwd=work)
        assert again.returncode == 0, again.stderr
        assert "resuming run r1" in again.stdout
    finally:
        kill_run(run_dir)
    r1 = runs_of(file)["r1"]
    assert (r1["state"], r1["sessions"]) == ("complete", 2)
    for unit in ("files", "copy", "sink"):
        assert r1["counts"][unit]["processed"] == count, (unit, r1["counts"])
    assert sorted(sink_names(out).values()) == [1] * count


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_pipeline_run_starts_stops_it_and_ends_the_run(
    tmp_path: Path, sig: signal.Signals
) -> None:
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 20)
    file = core_pipeline(tmp_path, files=files, out=out, watch=True)
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    run = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stdout is not None
        assert run.stdout.readline().startswith("run r1 of pipeline faults starts")
        run.send_signal(sig)  # start-up is still going on
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        kill_run(run_dir)
    assert run.returncode == 130, err
    assert "Traceback" not in err
    r1 = runs_of(file)["r1"]
    assert r1["state"] == "stopped", r1


def test_a_detached_run_whose_run_directory_is_deleted_ends_failed(tmp_path: Path) -> None:
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 20)
    # the store beside the file: only the run directory goes
    file = core_pipeline(tmp_path, files=files, out=out, watch=True, store="store")
    data = tmp_path / "data"
    run_dir = data / "runs" / "faults"
    started = pipeline("run", "--data-dir", str(data), str(file), "--detach", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    state = read_state(run_dir)
    try:
        wait_for(lambda: len(sink_names(out)) == 20, timeout=60, what="the 20 outputs")
        # as `rm -rf` does, again while the supervisor writes a file in it meanwhile
        wait_for(lambda: _removed(data), timeout=30, what="the data directory to go")
        wait_for(lambda: not alive(state["pid"]), timeout=60, what="the supervisor to end")
        units = [u["pid"] for u in (read_state(run_dir) or state)["units"] if u["pid"]]
        wait_for(lambda: not any(alive(p) for p in units), timeout=60, what="its tasks to end")
    finally:
        for pid in [state["pid"], *(u["pid"] for u in state["units"] if u["pid"])]:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
    r1 = runs_of(file)["r1"]
    assert r1["state"] == "failed", r1
    with open_transport({"embedded": {"path": str(tmp_path / "store")}}) as transport:
        end = RunStore(transport, "faults").get("r1").last_end
    assert end is not None
    assert str(run_dir / "state.json") in end["message"], end["message"]
    assert "No such file or directory" in end["message"]


def _removed(directory: Path) -> bool:
    shutil.rmtree(directory, ignore_errors=True)
    return not directory.exists()
