"""Where a worker computes: its host and the job of the executor that started it.

Every output's provenance carries these (`host`, `job`), and a consumer's `Message.producer`
with it, so that a bad result found among a night's results on a cluster names the node and the
Slurm job (or Nomad allocation) that computed it: to match it against a node with a bad disk or
driver, or against the job's log. They are read from the environment each executor provides
to its tasks, once per worker process, and are no part of the unit's configuration: its
fingerprint, and so a resumed run and the de-duplication of results, never see them.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Mapping
from typing import Any

#: Set by the local executor for its tasks (`local.executor`): it gives them the NOMAD_*
#: variables a Nomad task has, so those alone do not tell a local task from a Nomad one.
EXECUTOR_ENV = "ASAPO_PIPELINES_EXECUTOR"

#: the provenance's fields `placement` fills (the producer record's too)
PLACEMENT_FIELDS = ("host", "job")
#: job record key -> the Slurm variable it is read from (set by slurmd in every job's
#: environment; the array's only for a job of an array)
SLURM = {
    "id": "SLURM_JOB_ID",
    "node": "SLURMD_NODENAME",
    "array_job": "SLURM_ARRAY_JOB_ID",
    "array_task": "SLURM_ARRAY_TASK_ID",
}
#: job record key -> the Nomad variables it is read from, the first set one (Nomad sets
#: them in every task; a dispatched or periodic job's ID differs from its name)
NOMAD = {
    "id": ("NOMAD_JOB_ID", "NOMAD_JOB_NAME"),
    "alloc": ("NOMAD_ALLOC_ID",),
    "task": ("NOMAD_TASK_NAME",),
}


def placement(environ: Mapping[str, str], *, host: str, pid: int) -> dict[str, Any]:
    """`{"host": ..., "job": {"executor": ..., ...}}` for a process with `environ`.

    A Slurm job comes first: a `pipeline run` inside `salloc` or `sbatch` runs its workers
    under that job, whatever executor started them. Then a Nomad task (one of the local
    executor says so, `EXECUTOR_ENV`), else the process on its host (a `pipeline run`, a
    `pipeline worker` started by hand). The pid is in every job: it tells a restarted
    worker's results from those of the worker before it in the same job or allocation."""
    job: dict[str, Any]
    if environ.get("SLURM_JOB_ID"):
        job = {"executor": "slurm"}
        job.update({key: environ[name] for key, name in SLURM.items() if environ.get(name)})
    elif environ.get("NOMAD_ALLOC_ID") and environ.get(EXECUTOR_ENV) != "local":
        job = {"executor": "nomad"}
        for key, names in NOMAD.items():
            found = next((environ[n] for n in names if environ.get(n)), None)
            if found is not None:
                job[key] = found
    else:
        job = {"executor": "local"}
    job["pid"] = pid
    return {"host": host, "job": job}


#: (pid, `placement`) of this process: computed once, again in a forked child
_this: tuple[int, dict[str, Any]] | None = None


def this_process() -> dict[str, Any]:
    """`placement` of this process, computed once per process (a copy: the caller's own)."""
    global _this
    pid = os.getpid()
    if _this is None or _this[0] != pid:
        _this = (pid, placement(os.environ, host=socket.gethostname(), pid=pid))
    return copy.deepcopy(_this[1])
