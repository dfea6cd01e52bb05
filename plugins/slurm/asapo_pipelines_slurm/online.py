"""`pipeline validate --online` and the check before `pipeline deploy`: the partition the
file's `deploy.slurm` section names, asked of the cluster. Found at `plan` only, an unknown
partition was a plain error, away from the line that names it, and `validate` called the file
valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asapo_pipelines.sdk import ReportFinding
from asapo_pipelines_slurm import commands, environment
from asapo_pipelines_slurm.commands import NoSuchPartition, SlurmError

#: where the finding is located in the pipeline file
PARTITION = ("deploy", "slurm", "partition")
VENV = ("deploy", "slurm", "python", "venv")


def check(pipeline: Any, report: ReportFinding) -> None:
    config = pipeline.deploy.config("slurm")
    _check_partition(config, report)
    _check_environment(pipeline, config, report)


def _check_environment(pipeline: Any, config: Any, report: ReportFinding) -> None:
    """The jobs' environment (`python: {venv: ...}`) accepts the file, as each worker will."""
    venv = getattr(getattr(config, "python", None), "venv", None)
    if venv is None or pipeline.path is None:
        return
    why = environment.problem(venv, Path(pipeline.path).resolve())
    if why is not None:
        report(VENV, "P501", environment.sentence(venv, why))


def _check_partition(config: Any, report: ReportFinding) -> None:
    name = getattr(config, "partition", None)
    if name is None:
        return
    try:
        state = commands.check_partition(name).get("State", "UNKNOWN")
    except NoSuchPartition as exc:
        report(PARTITION, "P501", exc.message)
    except SlurmError as exc:  # no tools, no configuration, the controller down or failing
        report(PARTITION, "P502", f"partition {name} was not checked: {exc.message}")
    else:
        if state != "UP":
            # jobs sent there pend until an administrator changes it: `deploy` would fail
            report(
                PARTITION,
                "P501",
                f"Slurm's partition {name} is {state}: it starts no new jobs until an "
                "administrator sets it UP",
            )
