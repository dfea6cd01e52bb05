"""A detached run stopped by a full disk is `failed` in `pipeline status`, with the sentence
that stopped it and exit 1, not `lost` with exit 0: its supervisor could not write the state
file any more, so it writes its last state into the space it reserved for it when it started.
It stops its tasks as `pipeline stop` does (they drain and exit 0) and ends the run in the
store, or, when the store is on the full disk too, the next start ends it with that sentence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from faults_support import (
    alive,
    kill_run,
    pipeline,
    read_state,
    sink_names,
    wait_for,
    write_files,
)

from asapo_pipelines.launchplan.rundir import supervisor_alive
from asapo_pipelines.runs import RunStore
from asapo_pipelines.transport import open_transport

NO_SPACE = "failed: No space left on device"


def watching_pipeline(folder: Path, *, files: Path, out: Path, store: Path) -> Path:
    """core.files watching `files` -> core.jsonl-sink writing `out`, its store at `store`."""
    doc = {
        "pipeline": "diskfull",
        "transport": {"embedded": {"path": str(store)}},
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": str(files), "watch": True, "settle_seconds": 0.1},
                "outputs": {"files": "raw"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": str(out)},
                "inputs": {"messages": "raw"},
            },
        },
    }
    path = folder / "diskfull.pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


def run_until_the_disk_is_full(file: Path, run_dir: Path, out: Path, fs, *options: str) -> None:
    started = pipeline("run", "--detach", str(file), *options, cwd=file.parent)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: len(sink_names(out)) >= 5, timeout=60, what="the first outputs")
    supervisor = read_state(run_dir)["pid"]
    fs.fill()
    # not only its lock: the process, which ends the run in the store after releasing it
    wait_for(lambda: not alive(supervisor), timeout=60, what="the supervisor to exit")
    assert not supervisor_alive(run_dir)


def runs_of(file: Path) -> dict[str, dict]:
    listed = pipeline("runs", str(file), "--json", cwd=file.parent)
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r for r in json.loads(listed.stdout)["runs"]}


def assert_failed_for_lack_of_space(file: Path, run_dir: Path, *options: str) -> None:
    shown = pipeline("status", str(file), *options, cwd=file.parent)
    assert "Traceback" not in shown.stdout + shown.stderr
    assert shown.returncode == 1, shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())  # the table wraps the sentence
    assert f"writing the run state ({run_dir / 'state.json'}) {NO_SPACE}" in text, text
    assert "free space there and run again" in text
    assert "lost" not in text
    as_json = pipeline("status", str(file), *options, "--json", cwd=file.parent)
    assert as_json.returncode == 1, as_json.stderr
    assert json.loads(as_json.stdout)["status"] == "failed"


def test_a_detached_run_stopped_by_a_full_run_directory_is_failed_in_status(
    tmp_path: Path, tmpfs
) -> None:
    """The run directory on a small disk (`--data-dir`), the store on another."""
    fs = tmpfs("2m")
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 30)
    file = watching_pipeline(tmp_path, files=files, out=out, store=tmp_path / "store")
    run_dir = fs.path / "runs" / "diskfull"
    try:
        run_until_the_disk_is_full(file, run_dir, out, fs, "--data-dir", str(fs.path))
        assert_failed_for_lack_of_space(file, run_dir, "--data-dir", str(fs.path))
        state = read_state(run_dir)
        assert state is not None
        for unit in state["units"]:  # stopped as `pipeline stop` stops them: drained, exit 0
            assert (unit["state"], unit["pid"], unit["exit_codes"][-1:]) == ("stopped", None, [0])
    finally:
        kill_run(run_dir)
    end = first_end(tmp_path / "store", "r1")  # on another disk: the supervisor ended the run
    assert end["state"] == "failed", end
    assert NO_SPACE in end["message"]


def test_a_run_on_one_full_disk_is_failed_in_status_and_ends_so_in_the_store(
    tmp_path: Path, tmpfs
) -> None:
    """The pipeline file, its store and its run directory on one small disk; the scans
    arrive from a folder outside it (the layout the bug was found with)."""
    fs = tmpfs("3m")
    files, out = tmp_path / "incoming", fs.path / "out" / "copied.jsonl"
    write_files(files, 0, 30)
    file = watching_pipeline(fs.path, files=files, out=out, store=fs.path / "store")
    run_dir = fs.path / "store" / "runs" / "diskfull"
    try:
        run_until_the_disk_is_full(file, run_dir, out, fs)
        assert_failed_for_lack_of_space(file, run_dir)
        fs.free()
        # whether the supervisor still ended r1 in the store or this start does, it ends so
        restart_and_stop(file)
        end = first_end(fs.path / "store", "r1")
        assert end["state"] == "failed", end
        assert NO_SPACE in end["message"]
    finally:
        kill_run(run_dir)


def test_a_run_end_the_store_did_not_take_is_recorded_from_its_state_file(
    tmp_path: Path, tmpfs
) -> None:
    """The store cannot be reached when the supervisor ends (here its pipeline file is gone,
    so it does not know where the store is): the next start ends the run with the sentence
    the state file keeps, not as `lost`."""
    fs = tmpfs("2m")
    files, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    write_files(files, 0, 30)
    file = watching_pipeline(tmp_path, files=files, out=out, store=tmp_path / "store")
    aside = tmp_path / "aside.yaml"
    run_dir = fs.path / "runs" / "diskfull"
    try:
        started = pipeline("run", "--detach", str(file), "--data-dir", str(fs.path), cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        wait_for(lambda: len(sink_names(out)) >= 5, timeout=60, what="the first outputs")
        supervisor = read_state(run_dir)["pid"]
        file.rename(aside)
        fs.fill()
        wait_for(lambda: not alive(supervisor), timeout=60, what="the supervisor to exit")
        aside.rename(file)
        assert runs_of(file)["r1"]["state"] == "running"  # the supervisor could not end it
        assert_failed_for_lack_of_space(file, run_dir, "--data-dir", str(fs.path))
        finished = read_state(run_dir)["finished"]
        fs.free()
        time.sleep(2)  # the operator starts again later: the end is not taken for that start
        said = restart_and_stop(file, "--data-dir", str(fs.path))
    finally:
        kill_run(run_dir)
    end = first_end(tmp_path / "store", "r1")
    assert end["state"] == "failed", end
    sentence = f"writing the run state ({run_dir / 'state.json'}) {NO_SPACE}"
    assert sentence in end["message"]
    assert end["time"] == finished  # when the supervisor stopped, as its state file says
    session = runs_of(file)["r1"]["session_list"][0]
    assert (session["ended"], session["state"]) == (finished, "failed")
    assert sentence in session["message"]
    clock = time.strftime("%H:%M:%S", time.localtime(finished))
    resumed = (
        f"resuming run r1 of pipeline diskfull (unchanged); its last session failed at {clock}"
    )
    assert f"{resumed}: {sentence}" in " ".join(said.split()), said


def restart_and_stop(file: Path, *options: str) -> str:
    """Start the run again and stop it; what the start said."""
    again = pipeline("run", "--detach", str(file), *options, cwd=file.parent)
    assert again.returncode == 0, again.stderr
    stopped = pipeline("stop", str(file), *options, cwd=file.parent)
    assert stopped.returncode == 0, stopped.stderr
    return again.stdout


def first_end(store: Path, run_id: str) -> dict:
    """The `ended` event of the run's first session, as the store recorded it."""
    with open_transport({"embedded": {"path": str(store)}}) as transport:
        events = RunStore(transport, "diskfull").get(run_id).events
    return next(e for e in events if e.get("event") == "ended")
