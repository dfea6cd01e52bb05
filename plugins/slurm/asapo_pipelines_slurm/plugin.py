"""Registration module (the entry point): light, imports no runtime."""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk import ExecutorDescriptor, RegisterExecutor, ReportFinding, hookimpl
from asapo_pipelines_slurm.config import SlurmConfig


@hookimpl
def register_executors(register: RegisterExecutor) -> None:
    register(
        ExecutorDescriptor(
            name="slurm",
            summary="Each unit instance a Slurm batch job running `pipeline worker`.",
            description="Submits with sbatch, watches with squeue/scontrol, stops with scancel; "
            "a worker job that dies is resubmitted within the restart policy.",
            runtime="asapo_pipelines_slurm.executor:SlurmExecutor",
            config=SlurmConfig,
        )
    )


@hookimpl
def check_online(pipeline: Any, catalog: Any, report: ReportFinding) -> None:
    """`pipeline validate --online` and `deploy`: the partition, asked of the cluster."""
    from asapo_pipelines_slurm.online import check

    check(pipeline, report)
