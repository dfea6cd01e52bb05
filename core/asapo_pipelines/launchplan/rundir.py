"""Where a run on this machine keeps its files: `<data>/runs/<job>/`, with its state file.

The local executor's supervisor writes `state.json` there (`local.state`) and holds
`supervisor.lock` while it runs; `pipeline status`, `stop` and the viewer (`viewer.runstate`)
read them from other processes. The names are a contract between those processes, so they
are spelled here, in no backend, and each side imports them. What else is inside a run
directory (Nomad's allocation layout, the supervisor's log) is the local executor's own
(`local.layout`). Which data directory a file's run takes, and how a command given to the
user names it again (`--data-dir`), are here too: the run records (`runs.edits`) say them
without importing the local executor.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

#: the folder of runs under a pipeline's data directory
RUNS = "runs"
#: the run's state file; `pipeline status` and the viewer (`viewer.runstate`) read it
STATE_FILE = "state.json"
#: held (flock) by the run's supervisor while it runs: whether it lives, even after SIGKILL
LOCK_FILE = "supervisor.lock"
#: the compiled job the supervisor runs, written before it starts (`run --detach`)
JOB_FILE = "job.json"
#: a detached supervisor's output: its events, each after its time, and at its end the one
#: sentence it stopped with (`error: ...`)
SUPERVISOR_LOG = "supervisor.log"
#: held (flock, exclusive) by a `pipeline run` from before it looks whether the job runs until
#: its supervisor holds `LOCK_FILE`: the check, the run's record and the supervisor's start are
#: one step for every other start (refused while it is held) and for `stop`, `status` and
#: `logs` (which wait for it), where the supervisor's lock alone leaves a gap between them
START_LOCK = "start.lock"


def default_data_dir(transport: Mapping[str, Any], path: Path) -> Path:
    """The data directory a run of the file at `path` takes without `--data-dir`, from its
    transport's spec (the viewer and the run records hold the spec, not the pipeline)."""
    embedded = transport.get("embedded")
    if isinstance(embedded, Mapping) and embedded.get("path"):
        return Path(embedded["path"])
    return path.resolve().parent / DEFAULT_DATA_DIR


def session_data_dir(run_dir: str | None, transport: Mapping[str, Any], path: Path) -> str | None:
    """The `--data-dir` a local session recorded in run directory `run_dir` was started with
    (the run directory is `DATA_DIR/runs/JOB`), for a command advised to repeat it; None when
    it ran in the file's default data directory (or recorded none)."""
    if not run_dir:
        return None
    base = Path(run_dir).parent.parent
    try:
        if base.resolve() == default_data_dir(transport, path).resolve():
            return None
    except OSError:
        pass
    return str(base)


def logs_where(file: str | None, data_dir: str | None) -> str | None:
    """What `pipeline logs` (status, stop) needs before the unit to find this run: the file,
    with the `--data-dir` the command was given (without it they look in the default data
    directory, another run's or none). None without a file."""
    if file is None:
        return None
    return (
        f"{shlex.quote(file)} --data-dir {shlex.quote(data_dir)}" if data_dir else shlex.quote(file)
    )


def run_dir(data_dir: Path, job_id: str) -> Path:
    """The directory of the run of job `job_id` under `data_dir`."""
    return Path(data_dir) / RUNS / job_id


def file_run_dir(data_dir: Path, job_id: str, pipeline_file: Path) -> Path:
    """The run directory of the pipeline file at `pipeline_file`: `<data>/runs/<job>`, unless
    a run of another pipeline file is recorded there. Two files with one `pipeline:` name and
    one data directory (another transport or key prefix, another store: other pipelines)
    must never share one: `stop` of the one would stop the other's run, and both could not
    run at once. The second then has `<data>/runs/<job>@<file name>-<hash of its path>`."""
    mine = Path(pipeline_file).resolve()
    shared = run_dir(data_dir, job_id)
    stem = mine.name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".pipeline")
    digest = hashlib.sha256(str(mine).encode()).hexdigest()[:8]
    own = run_dir(data_dir, f"{job_id}@{stem}-{digest}")
    if (own / STATE_FILE).is_file():
        found = own  # once given, it stays this file's, whatever comes to `shared` later
    else:
        state = recorded_state(shared)
        other = started_from(state)
        ours = other is None or other == mine or _moved(state, other, shared, mine)
        found = shared if ours else own
    if supervisor_alive(found):
        return found
    # the file's `pipeline:` renamed while its run goes on: that run is still this file's, to
    # stop, show and refuse a second start of (which would read the same folders again)
    return _running_under_other_name(Path(data_dir), mine) or found


def _running_under_other_name(data_dir: Path, mine: Path) -> Path | None:
    """The run directory under `data_dir` of a run that a supervisor runs and whose state
    records `mine` as its file, None when there is none."""
    try:
        runs = sorted(p for p in (Path(data_dir) / RUNS).iterdir() if p.is_dir())
    except OSError:
        return None
    for run in runs:
        state = recorded_state(run)
        recorded = started_from(state)
        if recorded is None or not supervisor_alive(run):
            continue
        if recorded == mine or _moved(state, recorded, run, mine):
            return run
    return None


def _moved(state: dict[str, Any], recorded: Path, run: Path, mine: Path) -> bool:
    """Whether the file the run's state records is `mine`, moved or copied together with its
    data directory (a project folder renamed, or brought to other storage after the beamtime):
    every absolute path changed, but not where the file lies seen from the run directory."""
    recorded_run = state.get("run_dir")
    if not isinstance(recorded_run, str) or not recorded_run:
        return False
    return os.path.relpath(recorded, recorded_run) == os.path.relpath(mine, Path(run).resolve())


def recorded_state(run: Path) -> dict[str, Any]:
    """The run's state file as its supervisor last wrote it; empty when there is none (or it
    cannot be read: the local executor's `local.state.read_state` says why)."""
    try:
        data = json.loads((Path(run) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def started_from(state: dict[str, Any]) -> Path | None:
    """The pipeline file a run's state records; None for a compiled job (`*.json`, the same
    pipeline as the file it was compiled from) or none recorded."""
    recorded = state.get("pipeline_file")
    if not recorded or Path(recorded).suffix == ".json":
        return None
    return Path(recorded)


def supervisor_alive(run: Path) -> bool:
    """Whether a supervisor holds the run: decided by its lock, not by the pid in the state
    file, so a recycled pid is never taken for it and a supervisor killed with SIGKILL is
    recognised as gone."""
    return _held(Path(run) / LOCK_FILE)


def start_under_way(run: Path) -> bool:
    """Whether a `pipeline run` is starting the job in `run` now (it holds `START_LOCK`): its
    run may be recorded, its supervisor not yet started."""
    return _held(Path(run) / START_LOCK)


def _held(path: Path) -> bool:
    """Whether another process holds an exclusive flock on `path` (False without the file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# -- what a run directory says once its supervisor may be gone ---------------------------------
#: A run's (and a task's) states that are its end
FINAL = ("complete", "failed", "stopped")
#: A task's state when its supervisor is gone and its process is too: it exited, and no one
#: saw how (the supervisor that would have reaped it and restarted it is lost).
EXITED = "exited"


def pid_alive(pid: object) -> bool:
    """Whether process `pid` runs (a zombie does not). A pid read from a state file that is
    not a positive int is no process: `os.kill(-1, 0)` would succeed for every process."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not running
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def lock_holder(state: Mapping[str, Any]) -> int | None:
    """The pid of the supervisor that holds the run directory's lock now, as its state file
    names it; None when that file is still an earlier supervisor's: ended (`FINAL`) or whose
    process is gone. Then the lock is held by a start that has not written its state yet (a
    `pipeline run` recording its session, a supervisor starting), whose pid the file cannot
    tell, and naming the earlier one would point the operator at a process that is gone."""
    pid = state.get("pid")
    if state.get("status") in FINAL or not isinstance(pid, int) or not pid_alive(pid):
        return None
    return pid


def process_start(pid: int | None) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or
    None when it is gone. With the pid it names one process for good: a recycled pid has
    another start time."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields after the command: state, ppid, pgrp, ... starttime is the 20th of them
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def _task_pid_of_run(pid: int, alloc_id: str) -> bool:
    """Whether `pid` is still the task we started (its environment names its allocation)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"NOMAD_ALLOC_ID={alloc_id}".encode() in fh.read().split(b"\0")
    except OSError:
        return False


def still_ours(unit: Mapping[str, Any]) -> bool:
    """Whether the task a state record names still runs: the same pid with the same start time
    (a recycled pid has another), or, for records written before start times were kept, a
    process whose environment names the record's allocation. Never by process name."""
    pid = unit.get("pid")
    if not pid or not pid_alive(pid):
        return False
    recorded = unit.get("pid_start")
    if recorded is not None:
        return process_start(pid) == recorded
    return _task_pid_of_run(pid, str(unit.get("alloc_id")))


def last_words(run: Path) -> str | None:
    """The sentence a detached supervisor stopped with (its log's `error: ...` after its last
    event), or None: one that could not write its end into the state file (a store remounted
    read-only under it) said it there, which an output already open still takes, and the run
    failed with it rather than being lost."""
    try:
        lines = (run / SUPERVISOR_LOG).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ").strip() or None
        if line[:4].isdigit() and line[4:5] == "-":
            return None  # an event after it: a later session, or one still at work
    return None


def session_end(
    state: dict[str, Any], run: Path, began: float
) -> tuple[str, str, float | None] | None:
    """How the supervisor of the session begun at `began` ended, as its run directory `run`
    says (`state`: its state file, as read or `observed`), for when the store has no end of it:
    a supervisor stopped by a full disk leaves its end in the state file (in the space it
    reserved) when the store, on the same disk, could not take it; one that could write
    neither leaves its `last_words`. (state, its sentence, when it ended or None when not
    known), or None when the directory says nothing of this session's end. A state file of an
    earlier session (it `started` before `began`) is not this one's: the new supervisor has not
    written its own yet. The end the next start records (`local.session`) and the viewer's run
    both take it from here, from the state file `pipeline status` shows, so none disagrees."""
    ours = float(state.get("started") or 0) >= began
    if ours and state.get("status") in FINAL:
        at = state.get("finished") or state.get("updated")
        when = float(at) if isinstance(at, int | float) else None
        return str(state["status"]), str(state.get("message") or ""), when
    cause = last_words(run) if ours or not state else None
    return None if cause is None else ("failed", cause, None)


def observed(state: dict[str, Any], run: Path) -> dict[str, Any]:
    """A run's `state` (its state file) as it is now: `status` corrected to `lost` when it
    claims to run but no supervisor holds the run any more, and each task whose process is
    gone since shown as `exited` (no pid). The state file says what the supervisor last saw;
    `pipeline status` and the viewer both read it through this, so they never disagree."""
    if state.get("status") in FINAL or supervisor_alive(run):
        return state
    running = [u for u in state.get("units", []) if still_ours(u)]
    cause = None if running else last_words(run)
    state["status"] = "lost" if cause is None else "failed"
    for unit in state.get("units", []):
        if unit.get("state") not in (*FINAL, "pending") and not any(u is unit for u in running):
            unit.update(state=EXITED, pid=None)
    pid = f" (pid {state['pid']})" if state.get("pid") else ""
    if cause is not None:
        state["message"] = cause
    elif running:
        labels = ", ".join(f"{u['unit']}/{u['task']}" for u in running)
        state["message"] = (
            f"the supervisor{pid} is gone without stopping its tasks; {labels} still "
            "run: `pipeline stop` stops them"
        )
    else:
        state["message"] = (
            f"the supervisor{pid} is gone and none of its tasks runs any more; `pipeline "
            "stop` ends the run"
        )
    return state


# -- a session of `pipeline run` that no supervisor took ---------------------------------------
#: Seconds from the record of a `pipeline run` session to its supervisor's first state: a
#: foreground run writes it at once; a detached one, once its job is written, is waited for
#: as long as `run --detach` waits for it (`local.control.start_detached`).
STARTING = 5.0
STARTING_DETACHED = 30.0


def supervised_since(run: Path, began: float) -> bool:
    """Whether a supervisor took `run` for the session of `pipeline run` recorded at `began`:
    one holds it, or its state file was written since (a state file of an earlier session, or
    none at all, says no supervisor of this one ever ran)."""
    started = recorded_state(run).get("started")
    return supervisor_alive(run) or float(started or 0) >= began


def starting_until(run: Path, began: float) -> float:
    """Until when a supervisor may still take `run` for the session recorded at `began`
    (`STARTING`, or `STARTING_DETACHED` once a detached start wrote its job there)."""
    try:
        detached = (Path(run) / JOB_FILE).stat().st_mtime >= began
    except OSError:
        detached = False
    return began + (STARTING_DETACHED if detached else STARTING)


def unsupervised(run_id: str, pipeline: str, shown: object) -> str:
    """What `pipeline status` (and the viewer with it) says of run `run_id`, recorded as running
    while no supervisor took its run directory since its session began (`supervised_since`):
    nothing will end it but `pipeline stop`, which `shown` (the pipeline file) names."""
    return (
        f"run {run_id} of pipeline {pipeline} is recorded as running, but no supervisor runs "
        f"it: its `pipeline run` ended before starting one; `pipeline stop {shown}` ends the run"
    )
