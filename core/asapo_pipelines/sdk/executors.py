"""The import door for executor authors (`register_executors`): the interface an executor's
runtime implements and the pieces every executor launches its workers with, as
`asapo_pipelines.sdk` is the door for units and `asapo_pipelines.sdk.transports` for transports.

An executor is a subclass of `Executor`, constructed per command with the validated `Pipeline`,
the `Catalog`, the pipeline file and its own ``deploy:`` section (the descriptor's ``config``
model). It implements `plan` (what would be submitted, JSON-ready), `deploy` and `start` (each
waiting up to ``wait`` seconds for placement), `stop` (``purge`` also forgets the deployment),
`status` (an `ExecutorStatus` with one `InstanceStatus` per unit replica) and `logs` (a
replica's lines, oldest first); the ``show_*`` and ``print_logs`` methods print them and may be
overridden; `text_lines` turns log bytes into lines. Everything a user can fix is raised as
one sentence (a subclass of `asapo_pipelines.sdk.PipelinesError`); any other exception (a
scheduler client's, a bug) ends the command with one sentence naming the executor, its plugin
and what it was doing: ``the executor NAME (DISTRIBUTION) failed to deploy: RuntimeError: ...``.

Each unit replica is one ``pipeline worker FILE UNIT --replica N`` on the file as
`delivered_file` writes it, with `BASE_DIR_ENV` naming the original file's folder and
`RUN_ENV` the run `deploy` recorded (``self.run_id``). The job's type (`job_type`: `batch`
or `service`) says whether a worker that exits 0 is done. The workers' Python comes from the
section's ``python:`` (`PythonEnvConfig`, read with `python_env` and `pinned_distributions`):
`CommandOnPath`, an `ExistingEnv`, or an `InstallEnv` created before the worker by running
`INSTALL_SCRIPT`; a plan that cannot be made raises `LaunchPlanError`. A worker that ends is
restarted as Nomad's restart block says: a `RestartTracker` over a `RestartPolicy` gives each
exit a `Decision` (``complete``, ``restart`` after a delay, or ``fail``). A `deploy` or
`start` that fails because a unit failed for good within its wait raises
`asapo_pipelines.sdk.SubmissionFailed` with the result it would have returned, which
``--json`` still prints.
The Slurm plugin (`plugins/slurm`) is the reference.
"""

from __future__ import annotations

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.executor import Executor, ExecutorStatus, InstanceStatus, text_lines
from asapo_pipelines.launchplan.errors import LaunchPlanError
from asapo_pipelines.launchplan.job import JobType, delivered_file, job_type
from asapo_pipelines.launchplan.python_env import (
    INSTALL_SCRIPT,
    CommandOnPath,
    ExistingEnv,
    InstallEnv,
    PythonEnv,
    Wheel,
    pinned_distributions,
    python_env,
)
from asapo_pipelines.launchplan.restart import Decision, RestartPolicy, RestartTracker
from asapo_pipelines.launchplan.rundir import pid_alive
from asapo_pipelines.pipeline.model import Pipeline, PythonEnvConfig
from asapo_pipelines.worker.launch import BASE_DIR_ENV, RUN_ENV
from asapo_pipelines.worker.naming import JOB_TYPE_ENV

__all__ = [
    "BASE_DIR_ENV",
    "INSTALL_SCRIPT",
    "JOB_TYPE_ENV",
    "RUN_ENV",
    "Catalog",
    "CommandOnPath",
    "Decision",
    "Executor",
    "ExecutorStatus",
    "ExistingEnv",
    "InstallEnv",
    "InstanceStatus",
    "JobType",
    "LaunchPlanError",
    "Pipeline",
    "PythonEnv",
    "PythonEnvConfig",
    "RestartPolicy",
    "RestartTracker",
    "Wheel",
    "delivered_file",
    "job_type",
    "pid_alive",
    "pinned_distributions",
    "python_env",
    "text_lines",
]
