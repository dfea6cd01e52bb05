"""The job format: a small typed plan of a job -> Nomad's HTTP API JSON (`{"Job": {...}}`).

A pipeline's plan is written in Nomad's job JSON because that one job is what runs: the local
executor reads it back (`local.job.read_job`) and runs its tasks as subprocesses, and the Nomad
executor submits it to a cluster unchanged. The format is therefore executor-neutral and lives
beside the other launch pieces, not in the Nomad backend (whose own part is the HTTP client,
settings, placement and rendering).

The plan (`JobPlan`, `TaskGroupPlan`, ...) is deliberately plain: names, counts, argv, env,
resources, policies, files. Mapping a pipeline onto it lives in `launchplan.compile`; this
module knows Nomad's JSON and nothing about pipelines, so both executors (local and nomad) run
exactly what is written here. The workers' Python (`PythonEnv`, the install script) is every
executor's and lives in `asapo_pipelines.launchplan.python_env`. A plan that cannot be written
raises `LaunchPlanError`, as the other launch pieces do.

Rules that hold for every job produced here:
- commands are argv arrays handed to the driver, never a shell line;
- user-provided strings are refused where Nomad would interpolate them (`${...}`) and files are
  delivered through templates whose delimiters cannot occur in the file, so nothing a user wrote
  is ever interpreted;
- no secret is written into the job: secrets reach tasks as files on the node or through Nomad
  variables read by a template (`nomadVar`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from asapo_pipelines.launchplan.errors import LaunchPlanError
from asapo_pipelines.launchplan.job import JobType
from asapo_pipelines.launchplan.python_env import (
    INSTALL_SCRIPT,
    CommandOnPath,
    ExistingEnv,
    InstallEnv,
    PythonEnv,
)
from asapo_pipelines.launchplan.restart import RestartPolicy

# The task drivers a job may name are spelled once, with the pipeline file's `deploy.nomad`
# section that accepts them (the core's pipeline model never imports the job format).
from asapo_pipelines.pipeline import model
from asapo_pipelines.pipeline.model import DEFAULT_DRIVER, DRIVERS, Driver

SECOND = 1_000_000_000
#: Nomad's JSON wants durations as integer nanoseconds.


def ns(seconds: float) -> int:
    return round(seconds * SECOND)


#: Job IDs, group and task names we emit: safe in URLs, file names and Nomad's interpolation.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
#: Nomad variable paths (`nomad/jobs/<job>` and below) and their keys.
VAR_PATH_PATTERN = re.compile(r"^[A-Za-z0-9_./-]{1,128}$")
VAR_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: The Nomad variable a job's tasks render their `*_env` secrets from: the job's own path,
#: which its workload identity may read without an ACL policy (docs/nomad.md "Secrets").
SECRETS_PATH = "nomad/jobs/{job}"
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Distribution pins: `name==version` only, so an install installs exactly the catalog's set.
PIN_PATTERN = re.compile(model.PIN_PATTERN)
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: Where the pipeline file lands inside each task directory (Nomad's `local/`).
PIPELINE_DEST = "local/pipeline.yaml"
VENV_DIR = "${NOMAD_ALLOC_DIR}/venv"
INSTALL_TASK = "install-env"


@dataclass(frozen=True)
class TaskResources:
    """A task's resources block (`Resources.CPU`, `MemoryMB`, `Devices`); named apart from the
    unit descriptor's `Resources`, which is what a unit asks for."""

    cpu: int = 500
    memory_mb: int = 256
    gpus: int = 0
    gpu_device: str = "nvidia/gpu"


@dataclass(frozen=True)
class ReschedulePolicy:
    """Placement of a failed allocation elsewhere (Nomad's `reschedule` block); seconds."""

    attempts: int = 0
    interval: float = 0
    delay: float = 30
    delay_function: Literal["constant", "exponential", "fibonacci"] = "exponential"
    max_delay: float = 3600
    unlimited: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "Attempts": self.attempts,
            "Interval": ns(self.interval),
            "Delay": ns(self.delay),
            "DelayFunction": self.delay_function,
            "MaxDelay": ns(self.max_delay),
            "Unlimited": self.unlimited,
        }


#: Explicit defaults per job type; a pipeline worker restarts quickly on its node, then moves.
DEFAULT_RESTART = RestartPolicy()
DEFAULT_RESCHEDULE: dict[JobType, ReschedulePolicy] = {
    "service": ReschedulePolicy(),
    "batch": ReschedulePolicy(
        attempts=3, interval=24 * 3600, delay=10, delay_function="constant", unlimited=False
    ),
}


@dataclass(frozen=True)
class LogConfig:
    max_files: int = 5
    max_file_size_mb: int = 20


@dataclass(frozen=True)
class FileTemplate:
    """A file written into the task directory before the task starts, taken literally."""

    dest: str
    content: str
    perms: str = "0644"


@dataclass(frozen=True)
class NomadVarSecret:
    """An environment variable filled on the node from a Nomad variable (never in the job)."""

    env: str
    path: str
    key: str


#: The prestart task that installs the venv (`InstallEnv`): pip and venv need more memory than
#: a worker's default.
INSTALL_RESOURCES = TaskResources(cpu=500, memory_mb=1024)


@dataclass(frozen=True)
class TaskGroupPlan:
    """One unit: a task group of `count` allocations, each running `pipeline <args...>`."""

    name: str
    args: tuple[str, ...]
    count: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    resources: TaskResources = TaskResources()
    restart: RestartPolicy | None = None
    reschedule: ReschedulePolicy | None = None
    meta: Mapping[str, str] = field(default_factory=dict)
    kill_timeout: float = 30


@dataclass(frozen=True)
class JobPlan:
    """Everything the compiler needs to write one Nomad job."""

    id: str
    type: JobType
    groups: tuple[TaskGroupPlan, ...]
    name: str | None = None
    datacenters: tuple[str, ...] = ("*",)
    namespace: str | None = None
    region: str | None = None
    priority: int = 50
    meta: Mapping[str, str] = field(default_factory=dict)
    driver: Driver = DEFAULT_DRIVER
    image: str | None = None
    python: PythonEnv = field(default_factory=CommandOnPath)
    files: tuple[FileTemplate, ...] = ()
    secrets: tuple[NomadVarSecret, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    log: LogConfig = LogConfig()
    disk_mb: int | None = None


def compile_job(plan: JobPlan) -> dict[str, Any]:
    """The Nomad HTTP API registration payload `{"Job": {...}}` for `plan`."""
    _check_plan(plan)
    job: dict[str, Any] = {
        "ID": plan.id,
        "Name": plan.name or plan.id,
        "Type": plan.type,
        "Datacenters": list(plan.datacenters),
        "Priority": plan.priority,
        "Meta": dict(plan.meta),
        "TaskGroups": [_group(plan, group) for group in plan.groups],
    }
    if plan.namespace:
        job["Namespace"] = plan.namespace
    if plan.region:
        job["Region"] = plan.region
    return {"Job": job}


# -- groups and tasks ---------------------------------------------------------------------------


def _group(plan: JobPlan, group: TaskGroupPlan) -> dict[str, Any]:
    tasks = []
    if isinstance(plan.python, InstallEnv):
        tasks.append(_install_task(plan, plan.python))
    tasks.append(_worker_task(plan, group))
    restart = group.restart or DEFAULT_RESTART
    reschedule = group.reschedule or DEFAULT_RESCHEDULE[plan.type]
    return {
        "Name": group.name,
        "Count": group.count,
        "Meta": dict(group.meta),
        "RestartPolicy": restart.to_json(),
        "ReschedulePolicy": reschedule.to_json(),
        "EphemeralDisk": {"SizeMB": _disk_mb(plan, len(tasks))},
        "Tasks": tasks,
    }


def _disk_mb(plan: JobPlan, n_tasks: int) -> int:
    if plan.disk_mb is not None:
        return plan.disk_mb
    # Nomad refuses a job whose rotated logs cannot fit the ephemeral disk (stdout + stderr).
    logs = 2 * plan.log.max_files * plan.log.max_file_size_mb * n_tasks
    venv = 2048 if isinstance(plan.python, InstallEnv) else 0
    return max(300, logs + venv + 100)


def _worker_task(plan: JobPlan, group: TaskGroupPlan) -> dict[str, Any]:
    env = {"PYTHONUNBUFFERED": "1", **plan.env, **group.env}
    if isinstance(plan.python, InstallEnv | ExistingEnv):
        prefix = VENV_DIR if isinstance(plan.python, InstallEnv) else plan.python.path
        env.setdefault("VIRTUAL_ENV", prefix)
    task: dict[str, Any] = {
        "Name": group.name,
        "Driver": plan.driver,
        "Config": _config(plan, _pipeline_command(plan.python), list(group.args)),
        "Env": env,
        "Resources": _resources(group.resources),
        "Meta": dict(group.meta),
        "KillTimeout": ns(group.kill_timeout),
        # The worker drains on SIGTERM (Nomad's default would be SIGINT).
        "KillSignal": "SIGTERM",
        "LogConfig": _log(plan.log),
        "Templates": [*_file_templates(plan.files), *_secret_templates(plan.secrets)],
    }
    return task


def _install_task(plan: JobPlan, spec: InstallEnv) -> dict[str, Any]:
    node_wheels = [w for w in spec.wheels if w.on_node]
    fetched = [w for w in spec.wheels if not w.on_node]
    checks = json.dumps([[w.url, w.sha256] for w in node_wheels], separators=(",", ":"))
    args = ["-c", INSTALL_SCRIPT, VENV_DIR, checks, "--no-input", "--disable-pip-version-check"]
    # Nomad's go-getter checks each downloaded wheel against its sha256 before the task starts.
    artifacts = [
        {
            "GetterSource": wheel.url,
            "GetterOptions": {"checksum": f"sha256:{wheel.sha256}"},
            "GetterMode": "file",
            "RelativeDest": f"local/wheels/{_wheel_filename(wheel.url)}",
        }
        for wheel in fetched
    ]
    if fetched:
        args += ["--find-links", "${NOMAD_TASK_DIR}/wheels"]
    args += spec.pip_sources()
    task: dict[str, Any] = {
        "Name": INSTALL_TASK,
        "Driver": plan.driver,
        "Lifecycle": {"Hook": "prestart", "Sidecar": False},
        "Config": _config(plan, spec.python, args),
        "Env": {"PYTHONUNBUFFERED": "1", "PIP_NO_CACHE_DIR": "1"},
        "Resources": _resources(INSTALL_RESOURCES),
        "KillTimeout": ns(30),
        "LogConfig": _log(plan.log),
    }
    if artifacts:
        task["Artifacts"] = artifacts
    return task


def _pipeline_command(python: PythonEnv) -> str:
    if isinstance(python, InstallEnv):
        return f"{VENV_DIR}/bin/pipeline"
    if isinstance(python, ExistingEnv):
        return f"{python.path.rstrip('/')}/bin/pipeline"
    return "pipeline"


def _config(plan: JobPlan, command: str, args: list[str]) -> dict[str, Any]:
    if plan.driver == "docker":
        return {"image": plan.image, "command": command, "args": args}
    return {"command": command, "args": args}


def _resources(res: TaskResources) -> dict[str, Any]:
    out: dict[str, Any] = {"CPU": res.cpu, "MemoryMB": res.memory_mb}
    if res.gpus:
        out["Devices"] = [{"Name": res.gpu_device, "Count": res.gpus}]
    return out


def _log(log: LogConfig) -> dict[str, Any]:
    return {"MaxFiles": log.max_files, "MaxFileSizeMB": log.max_file_size_mb}


def template_delimiters(content: str) -> tuple[str, str]:
    """Delimiters that cannot occur in `content`, so consul-template copies it literally.

    They are derived from the content's hash: a file containing its own hash is not a
    practical concern, and the check below makes it impossible rather than unlikely."""
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    left, right = f"[[asapo-pipelines-{digest}<", f">{digest}]]"
    if left in content or right in content:  # pragma: no cover - needs a SHA-256 preimage
        raise LaunchPlanError("cannot choose template delimiters for a file that contains them")
    return left, right


def _file_templates(files: tuple[FileTemplate, ...]) -> list[dict[str, Any]]:
    out = []
    for item in files:
        left, right = template_delimiters(item.content)
        out.append(
            {
                "EmbeddedTmpl": item.content,
                "DestPath": item.dest,
                "LeftDelim": left,
                "RightDelim": right,
                "ChangeMode": "noop",
                "Perms": item.perms,
            }
        )
    return out


SECRETS_LEFT, SECRETS_RIGHT = "[[asapo-pipelines-secret<", ">secret]]"


def _secret_templates(secrets: tuple[NomadVarSecret, ...]) -> list[dict[str, Any]]:
    if not secrets:
        return []
    left, right = SECRETS_LEFT, SECRETS_RIGHT
    # Path and key are validated (no quotes, no delimiters), so the template is ours alone.
    lines = [
        f'{s.env}={left} with nomadVar "{s.path}" {right}{left} .{s.key} {right}{left} end {right}'
        for s in secrets
    ]
    return [
        {
            "EmbeddedTmpl": "\n".join(lines) + "\n",
            "DestPath": "secrets/pipeline.env",
            "LeftDelim": left,
            "RightDelim": right,
            "ChangeMode": "restart",
            "Perms": "0600",
            "Envvars": True,
        }
    ]


# -- checks ------------------------------------------------------------------------------------


#: Nomad's runtime variables (`${NOMAD_TASK_DIR}`, `${NOMAD_ALLOC_INDEX}`) are the only
#: interpolations a plan may carry.
_RUNTIME_VAR = re.compile(r"\$\{NOMAD_[A-Z0-9_]+\}")


def _no_interpolation(what: str, value: str) -> None:
    # Nomad interpolates `${...}` in Env values, driver Config and artifact sources; a user's
    # string must never be read as one.
    if "${" in _RUNTIME_VAR.sub("", value):
        raise LaunchPlanError(
            f"{what} contains '${{', which Nomad would interpolate; remove it or pass the value "
            "in the pipeline file instead"
        )


def _check_plan(plan: JobPlan) -> None:
    if not NAME_PATTERN.match(plan.id):
        raise LaunchPlanError(
            f"job ID {plan.id!r} must be lower case letters, digits, '-' or '_', starting with a "
            "letter, at most 63 characters"
        )
    if plan.driver not in DRIVERS:
        raise LaunchPlanError(
            f"unknown Nomad driver {plan.driver!r}; use one of {', '.join(DRIVERS)}"
        )
    if plan.driver == "docker" and not plan.image:
        raise LaunchPlanError("the docker driver needs an image (deploy.nomad.image)")
    if plan.driver != "docker" and plan.image:
        raise LaunchPlanError(f"an image is only used by the docker driver, not by {plan.driver}")
    if not 1 <= plan.priority <= 100:
        raise LaunchPlanError(f"job priority must be between 1 and 100, not {plan.priority}")
    if not plan.groups:
        raise LaunchPlanError("a job needs at least one task group")
    if not plan.datacenters:
        raise LaunchPlanError("a job needs at least one datacenter (use '*' for all)")
    names = [g.name for g in plan.groups]
    for name in names:
        if not NAME_PATTERN.match(name) or name == INSTALL_TASK:
            raise LaunchPlanError(f"task group name {name!r} is not usable in a Nomad job")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LaunchPlanError(f"task group {dup[0]!r} appears twice")
    for group in plan.groups:
        if group.count < 0:
            raise LaunchPlanError(f"unit {group.name}: replicas must be 0 or more")
        res = group.resources
        if res.cpu < 1 or res.memory_mb < 10 or res.gpus < 0:
            raise LaunchPlanError(
                f"unit {group.name}: resources need cpu >= 1 MHz, memory >= 10 MB, gpus >= 0"
            )
        _check_policies(group.name, group.restart, group.reschedule)
        for arg in group.args:
            _no_interpolation(f"unit {group.name}: argument {arg!r}", arg)
        _check_env(f"unit {group.name}", group.env)
        for key, value in group.meta.items():
            _no_interpolation(f"unit {group.name}: meta {key}", value)
    _check_env("the job", plan.env)
    for key, value in plan.meta.items():
        _no_interpolation(f"job meta {key}", value)
    if plan.image:
        _no_interpolation("the docker image", plan.image)
    _check_python(plan.python)
    for item in plan.files:
        if not re.match(r"^(local|secrets)/[A-Za-z0-9._/-]+$", item.dest) or ".." in item.dest:
            raise LaunchPlanError(
                f"file destination {item.dest!r} must be under local/ or secrets/"
            )
    seen: set[str] = set()
    for secret in plan.secrets:
        if not ENV_NAME_PATTERN.match(secret.env) or secret.env in seen:
            raise LaunchPlanError(f"secret variable name {secret.env!r} is invalid or repeated")
        seen.add(secret.env)
        if not VAR_PATH_PATTERN.match(secret.path) or not VAR_KEY_PATTERN.match(secret.key):
            raise LaunchPlanError(
                f"Nomad variable {secret.path!r} key {secret.key!r}: paths take letters, digits "
                "and ./_-, keys letters, digits and _"
            )


def _check_policies(
    unit: str, restart: RestartPolicy | None, reschedule: ReschedulePolicy | None
) -> None:
    """Nomad's own rules for the two policies, checked before anything is submitted."""
    if restart is not None:
        if restart.interval < 5:
            raise LaunchPlanError(f"unit {unit}: the restart interval must be at least 5 s")
        if restart.attempts == 0 and restart.mode != "fail":
            raise LaunchPlanError(f"unit {unit}: restart mode delay needs at least one attempt")
        if restart.attempts * restart.delay > restart.interval:
            raise LaunchPlanError(
                f"unit {unit}: {restart.attempts} restarts {restart.delay:g} s apart do not fit "
                f"in the restart interval of {restart.interval:g} s"
            )
    if reschedule is not None:
        if reschedule.delay < 5:
            raise LaunchPlanError(f"unit {unit}: the reschedule delay must be at least 5 s")
        if reschedule.attempts > 0 and reschedule.unlimited:
            raise LaunchPlanError(
                f"unit {unit}: rescheduling is either unlimited or limited to some attempts"
            )
        if reschedule.delay_function != "constant" and reschedule.max_delay < reschedule.delay:
            raise LaunchPlanError(f"unit {unit}: the reschedule max delay is below its delay")
        if not reschedule.unlimited:
            if reschedule.interval < 15:
                raise LaunchPlanError(f"unit {unit}: the reschedule interval must be at least 15 s")
            if reschedule.attempts * reschedule.delay > reschedule.interval:
                raise LaunchPlanError(
                    f"unit {unit}: {reschedule.attempts} reschedules {reschedule.delay:g} s apart "
                    f"do not fit in the interval of {reschedule.interval:g} s"
                )


def _check_env(where: str, env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not ENV_NAME_PATTERN.match(key):
            raise LaunchPlanError(f"{where}: environment variable name {key!r} is invalid")
        _no_interpolation(f"{where}: environment variable {key}", value)


def _check_python(python: PythonEnv) -> None:
    if isinstance(python, ExistingEnv):
        if not python.path.startswith("/"):
            raise LaunchPlanError(
                f"the Python environment path {python.path!r} must be absolute (a path that "
                "exists on every node)"
            )
        _no_interpolation("the Python environment path", python.path)
    elif isinstance(python, InstallEnv):
        if not python.requirements:
            raise LaunchPlanError("installing an environment needs at least one distribution")
        for req in python.requirements:
            if not PIN_PATTERN.match(req):
                raise LaunchPlanError(
                    f"distribution {req!r} must be pinned as name==version so every node "
                    "installs the same code"
                )
        urls = [u for u in (python.index_url, *python.extra_index_urls) if u]
        for url in urls:
            _no_interpolation("the package index URL", url)
            if re.match(r"^[a-z+]+://[^/@]*@", url):
                raise LaunchPlanError(
                    "the package index URL contains credentials, which would be written into "
                    "the job; configure them on the nodes (pip.conf or netrc) instead"
                )
        for wheel in python.wheels:
            _no_interpolation("a wheel URL", wheel.url)
            if not SHA256_PATTERN.match(wheel.sha256):
                raise LaunchPlanError(f"wheel {wheel.url}: sha256 must be 64 lower-case hex digits")
            _wheel_filename(wheel.url)
            if not wheel.on_node and not re.match(r"^[a-z0-9]+(::[a-z0-9]+)?://", wheel.url):
                raise LaunchPlanError(
                    f"wheel {wheel.url!r} must be a URL or an absolute path on the nodes"
                )
        if not re.match(r"^[A-Za-z0-9_./-]+$", python.python):
            raise LaunchPlanError(f"Python interpreter {python.python!r} is not a plain path")


def _wheel_filename(url: str) -> str:
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not re.match(r"^[A-Za-z0-9_.+!-]+\.whl$", name):
        raise LaunchPlanError(f"wheel URL {url!r} must end in a .whl file name")
    return name


_SECRET_NAME = re.compile(r"(?i)(token|secret|passw|credential|private|api_?key|access_?key)")
REDACTED = "<redacted>"


def redacted(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a job payload safe to print: values of secret-looking environment variables,
    artifact headers and go-getter credentials are replaced. (The compiler puts no secret in a
    job; this guards what people add by hand or what Nomad sends back.)"""
    out = json.loads(json.dumps(payload))
    for group in (out.get("Job") or {}).get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            env = task.get("Env") or {}
            for key in env:
                if _SECRET_NAME.search(key):
                    env[key] = REDACTED
            for artifact in task.get("Artifacts") or []:
                headers = artifact.get("GetterHeaders") or {}
                for key in headers:
                    headers[key] = REDACTED
                options = artifact.get("GetterOptions") or {}
                for key in options:
                    if key != "checksum" and _SECRET_NAME.search(key):
                        options[key] = REDACTED
    return dict(out)


# -- reading a compiled task back (for the local executor) -------------------------------------


@dataclass(frozen=True)
class TaskFile:
    """A template of a compiled task whose text is literal: write `content` to `dest`."""

    dest: str
    content: str
    perms: str


@dataclass(frozen=True)
class VarRef:
    """An environment variable the task gets from a Nomad variable on a cluster."""

    env: str
    path: str
    key: str


_SECRET_LINE = re.compile(
    r"^(?P<env>[A-Za-z_][A-Za-z0-9_]*)="
    + re.escape(SECRETS_LEFT)
    + r' with nomadVar "(?P<path>[^"]+)" '
    + re.escape(SECRETS_RIGHT + SECRETS_LEFT)
    + r" \.(?P<key>[A-Za-z_][A-Za-z0-9_]*) "
    + re.escape(SECRETS_RIGHT + SECRETS_LEFT + " end " + SECRETS_RIGHT)
    + "$"
)


def task_files(task: Mapping[str, Any]) -> list[TaskFile]:
    """The files to put in a task's directory before it starts, without consul-template: the
    compiler's file templates are literal by construction (their delimiters do not occur)."""
    files = []
    for template in task.get("Templates") or []:
        if template.get("LeftDelim") == SECRETS_LEFT:
            continue  # see task_secrets
        text = str(template.get("EmbeddedTmpl") or "")
        left = str(template.get("LeftDelim") or "{{")
        right = str(template.get("RightDelim") or "}}")
        if left in text or right in text:
            raise LaunchPlanError(
                f"template {template.get('DestPath')} of task {task.get('Name')} needs "
                "consul-template; only Nomad can render it"
            )
        files.append(
            TaskFile(
                dest=str(template["DestPath"]),
                content=text,
                perms=str(template.get("Perms") or "0644"),
            )
        )
    return files


def task_secrets(task: Mapping[str, Any]) -> list[VarRef]:
    """The environment variables a task reads from Nomad variables (the compiler's secrets
    template); run locally, they come from the caller's environment instead."""
    refs = []
    for template in task.get("Templates") or []:
        if template.get("LeftDelim") != SECRETS_LEFT:
            continue
        for line in str(template.get("EmbeddedTmpl") or "").splitlines():
            match = _SECRET_LINE.match(line)
            if match is None:
                raise LaunchPlanError(f"task {task.get('Name')}: unreadable secrets template line")
            refs.append(VarRef(env=match["env"], path=match["path"], key=match["key"]))
    return refs
