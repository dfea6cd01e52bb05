"""Where a run on this machine keeps its files: `<data>/runs/<job>/`, with its state file.

The local executor's supervisor writes `state.json` there (`local.state`) and holds
`supervisor.lock` while it runs; `pipeline status`, `stop` and the viewer (`viewer.runstate`)
read them from other processes. The names are a contract between those processes, so they
are spelled here, in no backend, and each side imports them. What else is inside a run
directory (Nomad's allocation layout, the supervisor's log) is the local executor's own
(`local.layout`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: the folder of runs under a pipeline's data directory
RUNS = "runs"
#: the run's state file; `pipeline status` and the viewer (`viewer.runstate`) read it
STATE_FILE = "state.json"
#: held (flock) by the run's supervisor while it runs: whether it lives, even after SIGKILL
LOCK_FILE = "supervisor.lock"
#: the compiled job the supervisor runs, written before it starts (`run --detach`)
JOB_FILE = "job.json"


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
        return own  # once given, it stays this file's, whatever comes to `shared` later
    other = started_from(recorded_state(shared))
    return shared if other is None or other == mine else own


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
    path = Path(run) / LOCK_FILE
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
