"""`deploy: {slurm: {...}}`: where and how a pipeline's workers run as Slurm jobs.

Light on purpose (pydantic and the core's models only): the catalog imports it to build the
pipeline file's schema without importing the executor.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from asapo_pipelines.sdk.executors import PythonEnvConfig
from asapo_pipelines_slurm.sbatch_options import parse

#: Slurm's time formats (sbatch --time): minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS,
#: or UNLIMITED / INFINITE.
TIME_PATTERN = r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$"
#: Options the executor sets itself (long names): a copy in `extra_options` would break restarts,
#: logs or the job's identity, so it is refused rather than silently overridden.
RESERVED_OPTIONS = frozenset(
    {
        "job-name",
        "output",
        "error",
        "open-mode",
        "parsable",
        "array",
        "wrap",
        "chdir",
        "ntasks",
        "nodes",
        "cpus-per-task",
        "mem",
        "gres",
        "gpus",
        "requeue",
        "no-requeue",
        "hold",
        "wait",
    }
)
#: Options with which sbatch submits nothing (it checks, or prints, and exits).
NOT_SUBMITTING = frozenset({"test-only", "help", "usage", "version"})
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.,=:+-]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlurmRestart(_Section):
    """What happens when a worker's job ends without finishing its work (killed, node failure,
    non-zero exit): it is resubmitted, at most `attempts` times within `interval`."""

    attempts: Annotated[int, Field(ge=0, le=1000, description="Resubmissions allowed.")] = 5
    interval: Annotated[
        float, Field(ge=5, description="Seconds over which `attempts` are counted.")
    ] = 1800
    delay: Annotated[float, Field(ge=0, le=3600, description="Seconds before a resubmission.")] = 5
    mode: Annotated[
        Literal["fail", "delay"],
        Field(description="When attempts run out: `fail`, or `delay` until the interval ends."),
    ] = "fail"


class SlurmConfig(_Section):
    """How the pipeline runs on Slurm: each unit instance (replica) is one batch job."""

    partition: Annotated[
        str | None, Field(pattern=_NAME, description="Partition (sbatch --partition).")
    ] = None
    account: Annotated[str | None, Field(pattern=_NAME, description="Account to charge.")] = None
    qos: Annotated[str | None, Field(pattern=_NAME, description="Quality of service.")] = None
    time: Annotated[
        str | None,
        Field(
            description="Time limit of each job in Slurm's formats, e.g. `12:00:00`, "
            "`2-00:00:00` or `UNLIMITED`.",
            json_schema_extra={"pattern": TIME_PATTERN},
        ),
    ] = None
    constraint: Annotated[
        str | None,
        Field(pattern=r"^[A-Za-z0-9_&|!*()\[\]:,.-]+$", description="Node features required."),
    ] = None
    extra_options: Annotated[
        list[str],
        Field(description="Further sbatch options, one per item, e.g. `--reservation=beam`."),
    ] = []
    mhz_per_cpu: Annotated[
        int,
        Field(
            ge=1,
            description="A unit's `cpu` (MHz, as Nomad counts) becomes "
            "ceil(cpu / mhz_per_cpu) CPUs per task.",
        ),
    ] = 1000
    python: Annotated[
        PythonEnvConfig | None,
        Field(
            description="Python of the workers: `venv` (an environment on the shared "
            "filesystem) or `install` (created once in the state directory); default: the "
            "environment that runs `pipeline deploy`."
        ),
    ] = None
    state_dir: Annotated[
        str | None,
        Field(
            description="Directory for job scripts, logs and the deployment's state, seen by "
            "every node (default: .pipeline-slurm/<pipeline> beside the pipeline file)."
        ),
    ] = None
    restart: Annotated[SlurmRestart, Field(description="Resubmission of jobs that die.")] = (
        SlurmRestart()
    )
    lease_seconds: Annotated[
        float | None,
        Field(
            ge=0.1,
            description="Seconds before a dead worker's unacknowledged messages go to "
            "another (the worker's --lease-seconds).",
        ),
    ] = None
    poll_interval: Annotated[
        float, Field(ge=0.2, le=300, description="Seconds between two looks at the jobs.")
    ] = 2.0

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and not re.match(TIME_PATTERN, value):
            raise ValueError(
                f"{value!r} is not a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, "
                "D-HH:MM:SS or UNLIMITED)"
            )
        return value

    @field_validator("extra_options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        # each item as sbatch reads it (attached values, grouped short options, abbreviated
        # long names), so that no spelling of an option the executor sets gets through
        for item in value:
            for option in parse(item):
                if option.name in RESERVED_OPTIONS:
                    raise ValueError(
                        f"sbatch option {option} is set by the executor for each job; remove it"
                    )
                if option.name in NOT_SUBMITTING:
                    raise ValueError(f"sbatch option {option} would submit no job; remove it")
        return value
