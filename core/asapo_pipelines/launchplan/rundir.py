"""Where a run on this machine keeps its files: `<data>/runs/<job>/`, with its state file.

The local executor's supervisor writes `state.json` there (`local.state`); `pipeline status`
and the viewer (`viewer.runstate`) read it from other processes. The names are a contract
between those processes, so they are spelled here, in no backend, and each side imports them.
What is inside a run directory besides the state file (Nomad's allocation layout, the job, the
supervisor's lock and log) is the local executor's own (`local.layout`).
"""

from __future__ import annotations

from pathlib import Path

#: the folder of runs under a pipeline's data directory
RUNS = "runs"
#: the run's state file; `pipeline status` and the viewer (`viewer.runstate`) read it
STATE_FILE = "state.json"


def run_dir(data_dir: Path, job_id: str) -> Path:
    """The directory of the run of job `job_id` under `data_dir`."""
    return Path(data_dir) / RUNS / job_id
