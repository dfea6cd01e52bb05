"""A validated pipeline -> one Slurm batch job per unit instance (replica).

Why one job per instance rather than one heterogeneous job with a component per unit: Slurm
requeues, cancels and accounts a heterogeneous job as a whole, so one dead worker would restart
(or end) the whole pipeline; separate jobs restart alone, start as soon as their own resources
are free, and each has its own log files.

The worker is started exactly as the Nomad executors start it (`pipeline worker FILE UNIT
--replica N` on a delivered copy of the file whose transport paths are absolute, with
ASAPO_PIPELINES_BASE_DIR naming the original file's folder); the core supplies those pieces
through the executor authors' door (`asapo_pipelines.sdk.executors`), and its install script
prepares a venv when asked.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.sdk.executors import (
    BASE_DIR_ENV,
    INSTALL_SCRIPT,
    JOB_TYPE_ENV,
    RUN_ENV,
    ExistingEnv,
    InstallEnv,
    LaunchPlanError,
    PythonEnv,
    delivered_file,
    job_type,
    pinned_distributions,
    python_env,
)
from asapo_pipelines_slurm.commands import SlurmError
from asapo_pipelines_slurm.config import SlurmConfig
from asapo_pipelines_slurm.state import Layout, deployed_file, instance_key

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.sdk import Resources
    from asapo_pipelines.sdk.executors import Catalog, Pipeline

#: The folder of deployments beside the pipeline file when `state_dir` is not given.
DEFAULT_STATE_DIR = ".pipeline-slurm"


@dataclass
class JobSpec:
    """One unit instance as submitted: `sbatch <options> <script>`."""

    unit: str
    replica: int
    name: str
    options: list[str]
    script: str
    script_path: str
    stdout: str
    stderr: str

    @property
    def key(self) -> str:
        return instance_key(self.unit, self.replica)


@dataclass
class SlurmPlan:
    pipeline: str
    type: str
    state_dir: str
    pipeline_text: str
    jobs: list[JobSpec]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "executor": "slurm",
            "deployment": self.pipeline,
            "type": self.type,
            "state_dir": self.state_dir,
            "jobs": [asdict(job) for job in self.jobs],
            "warnings": list(self.warnings),
        }

    def describe(self, partition: dict[str, Any]) -> str:
        """`pipeline plan`'s text: per unit instance, the sbatch command (one option a line, as
        it could be typed) and the job's script; `partition` is what the cluster said of it."""
        lines = [
            f"pipeline {self.pipeline} on Slurm: {len(self.jobs)} {self.type} job(s), one per "
            f"unit instance; state in {self.state_dir}",
            f"partition: {_partition_line(partition)}",
        ]
        for job in self.jobs:
            lines += ["", f"unit {job.unit} replica {job.replica}: job {job.name}", "  sbatch \\"]
            lines += [f"      {shlex.quote(option)} \\" for option in job.options]
            lines += [f"      {shlex.quote(job.script_path)}", f"  script {job.script_path}:"]
            lines += [f"    {line}" if line else "" for line in job.script.splitlines()]
        return "\n".join(lines) + "\n"


def _partition_line(partition: dict[str, Any]) -> str:
    if partition.get("name") is None:
        return "none given (Slurm's default partition)"
    if not partition.get("checked"):
        return f"{partition['name']} (not checked)"
    return f"{partition['name']} ({partition.get('state', 'UNKNOWN')} on the cluster)"


def state_dir(pipeline: Pipeline, file: Path, config: SlurmConfig) -> Path:
    """The deployment's directory: `state_dir` when given (`executor.SlurmExecutor` refuses one
    that holds another file's deployment), else `.pipeline-slurm/<pipeline>` beside the file,
    unless another pipeline file's deployment is recorded there. Two files of one `pipeline:`
    name in one folder (each with its own store: other pipelines) must never share one: the
    second's deploy replaced the first's state, and `stop` of the one cancelled the other's
    jobs. The second then has `<pipeline>@<file name>-<hash of its path>`, as the local
    executor keeps their run directories apart (`launchplan.rundir.file_run_dir`)."""
    mine = Path(file).resolve()
    if config.state_dir:
        return (mine.parent / config.state_dir).resolve()
    shared = mine.parent / DEFAULT_STATE_DIR / str(pipeline.name)
    stem = mine.name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".pipeline")
    digest = hashlib.sha256(str(mine).encode()).hexdigest()[:8]
    own = shared.with_name(f"{pipeline.name}@{stem}-{digest}")
    if Layout(own).state.is_file():
        return own  # once given, it stays this file's, whatever comes to `shared` later
    other = deployed_file(Layout(shared))
    return shared if other is None or other == str(mine) else own


def cpus(cpu_mhz: int, config: SlurmConfig) -> int:
    return max(1, math.ceil(cpu_mhz / config.mhz_per_cpu))


def worker_command(python: PythonEnv, layout: Layout) -> list[str]:
    """How a job starts `pipeline`: the configured venv's, the installed one's, or (default)
    the interpreter that deploys, which a shared filesystem shows at the same path on nodes."""
    if isinstance(python, ExistingEnv):
        return [f"{python.path.rstrip('/')}/bin/pipeline"]
    if isinstance(python, InstallEnv):
        return [str(layout.venv / "bin" / "pipeline")]
    return [sys.executable, "-m", "asapo_pipelines"]


def install_lines(spec: InstallEnv, layout: Layout) -> list[str]:
    """The prestart step of the Nomad job, run by the job before its worker: the core's install
    script (checks wheel checksums, creates the venv once, pip installs the pinned set), under
    flock so that the jobs of one deployment install it once between them."""
    remote = [w.url for w in spec.wheels if not w.on_node]
    if remote:
        raise SlurmError(
            f"wheel {remote[0]} is a URL; on Slurm give wheels as absolute paths on the "
            "shared filesystem (with #sha256=...)"
        )
    checks = json.dumps([[w.url, w.sha256] for w in spec.wheels], separators=(",", ":"))
    args = [str(layout.venv), checks, "--no-input", "--disable-pip-version-check"]
    args += spec.pip_sources()  # every wheel is on the node: URLs were refused above
    argv = ["flock", str(layout.root / "venv.lock"), spec.python, "-c", INSTALL_SCRIPT, *args]
    return [
        "# prestart: the pipeline's plugin distributions, pinned, in a venv on the shared disk",
        f"PIP_NO_CACHE_DIR=1 {shlex.join(argv)} >&2 || exit $?",
    ]


def _script(
    pipeline: Pipeline,
    unit: str,
    replica: int,
    layout: Layout,
    python: PythonEnv,
    base_dir: Path,
    config: SlurmConfig,
    run_id: str | None,
    kind: str,
) -> str:
    # JOB_TYPE_ENV: a service's workers wait for more when their inputs are finished
    env = {BASE_DIR_ENV: str(base_dir), "PYTHONUNBUFFERED": "1", JOB_TYPE_ENV: kind}
    if run_id is not None:  # the run `pipeline deploy` recorded: the worker joins it
        env[RUN_ENV] = run_id
    if isinstance(python, ExistingEnv):
        env["VIRTUAL_ENV"] = python.path
    elif isinstance(python, InstallEnv):
        env["VIRTUAL_ENV"] = str(layout.venv)
    argv = [*worker_command(python, layout), "worker", str(layout.pipeline), unit]
    argv += ["--replica", str(replica)]
    if config.lease_seconds is not None:
        argv += ["--lease-seconds", f"{config.lease_seconds:g}"]
    lines = [
        "#!/bin/bash",
        f"# asapo-pipelines: unit {unit} replica {replica} of pipeline {pipeline.name}",
        *(f"export {key}={shlex.quote(value)}" for key, value in env.items()),
        # SLURMD_NODENAME, not $(hostname): the node as every result's provenance names it
        # (worker/placement.py) and as squeue and sinfo do; a node's hostname may be its full
        # domain name or differ from its Slurm name, and the log must match the results
        'echo "asapo-pipelines: Slurm job $SLURM_JOB_ID on $SLURMD_NODENAME at $(date -Is)" >&2',
    ]
    if isinstance(python, InstallEnv):
        lines += install_lines(python, layout)
    # exec: the job's exit code and signals are the worker's own
    lines.append(f"exec {shlex.join(argv)}")
    return "\n".join(lines) + "\n"


def _options(
    name: str, layout: Layout, key: str, resources: Resources, config: SlurmConfig
) -> list[str]:
    options = [
        f"--job-name={name}",
        f"--output={layout.stdout(key)}",
        f"--error={layout.stderr(key)}",
        # a resubmitted worker appends to the same files: one log per instance
        "--open-mode=append",
        f"--chdir={layout.root}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={cpus(int(resources.cpu), config)}",
        f"--mem={int(resources.memory)}M",
        # restarts are the executor's (resubmission), never Slurm's own requeue as well, which
        # would run a second copy of the worker
        "--no-requeue",
    ]
    if int(resources.gpus):
        options.append(f"--gres=gpu:{int(resources.gpus)}")
    for option, value in (
        ("--partition", config.partition),
        ("--account", config.account),
        ("--qos", config.qos),
        ("--time", config.time),
        ("--constraint", config.constraint),
    ):
        if value:
            options.append(f"{option}={value}")
    return [*options, *config.extra_options]


def plan_for(
    pipeline: Pipeline,
    catalog: Catalog,
    file: Path,
    config: SlurmConfig,
    run_id: str | None = None,
) -> SlurmPlan:
    """Every job of the pipeline, without submitting anything."""
    layout = Layout(state_dir(pipeline, file, config))
    pins = pinned_distributions(pipeline, catalog, "slurm")
    try:
        python = python_env(config.python, pins, "deploy.slurm.python")
    except LaunchPlanError as exc:
        raise SlurmError(str(exc)) from None
    warnings = []
    transport = pipeline.transport.spec()
    if "embedded" in transport:
        warnings.append(
            "the embedded transport keeps its data in "
            f"{transport['embedded']['path']}: every node must see that path (a shared "
            "filesystem that supports SQLite's locking), else use the asapo transport"
        )
    base_dir = Path(file).resolve().parent
    kind = job_type(pipeline, catalog)
    jobs = []
    for unit, unit_config in pipeline.units.items():
        resources = pipeline.resources_for(unit, catalog)
        for replica in range(int(unit_config.replicas)):
            key = instance_key(unit, replica)
            name = f"{pipeline.name}.{unit}.{replica}"
            jobs.append(
                JobSpec(
                    unit=unit,
                    replica=replica,
                    name=name,
                    options=_options(name, layout, key, resources, config),
                    script=_script(
                        pipeline, unit, replica, layout, python, base_dir, config, run_id, kind
                    ),
                    script_path=str(layout.script(key)),
                    stdout=str(layout.stdout(key)),
                    stderr=str(layout.stderr(key)),
                )
            )
    text = delivered_file(pipeline, Path(file).read_text(encoding="utf-8"))
    return SlurmPlan(
        pipeline=str(pipeline.name),
        type=kind,
        state_dir=str(layout.root),
        pipeline_text=text,
        jobs=jobs,
        warnings=warnings,
    )
