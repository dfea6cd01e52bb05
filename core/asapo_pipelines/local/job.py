"""The parts of a Nomad job (HTTP API JSON, PascalCase, durations in ns) that run locally.

Reading the job into small frozen records once means the supervisor loop never digs through
dictionaries, and every malformed field is reported before anything starts, in one sentence.
Defaults are Nomad's documented ones where the job leaves a field out.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from asapo_pipelines.launchplan.restart import RestartPolicy
from asapo_pipelines.local.errors import LocalRunError
from asapo_pipelines.pipeline.model import DRIVERS

NS = 1_000_000_000

#: Nomad's defaults (job specification docs): restart per job type, kill timeout, logs.
DEFAULT_RESTART = {
    "service": {"Attempts": 2, "Interval": 30 * 60 * NS, "Delay": 15 * NS, "Mode": "fail"},
    "batch": {"Attempts": 3, "Interval": 24 * 3600 * NS, "Delay": 15 * NS, "Mode": "fail"},
}
DEFAULT_KILL_TIMEOUT = 5 * NS
DEFAULT_LOG = {"MaxFiles": 10, "MaxFileSizeMB": 10}


@dataclass(frozen=True)
class Template:
    content: str
    dest: str
    left: str
    right: str
    perms: str
    envvars: bool


@dataclass(frozen=True)
class Artifact:
    source: str
    dest: str
    checksum: str | None
    mode: str


@dataclass(frozen=True)
class TaskSpec:
    group: str
    name: str
    driver: str
    command: str
    args: tuple[str, ...]
    image: str | None
    env: Mapping[str, str]
    meta: Mapping[str, str]
    hook: str | None  # None (main task), "prestart", "poststart", "poststop"
    sidecar: bool
    kill_timeout: float  # seconds
    kill_signal: int
    log_max_files: int
    log_max_file_size_mb: int
    cpu: int
    memory_mb: int
    templates: tuple[Template, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    #: the group's RestartPolicy with the task's own `RestartPolicy` fields over it
    restart: RestartPolicy | None = None

    @property
    def is_main(self) -> bool:
        return self.hook is None


@dataclass(frozen=True)
class GroupSpec:
    name: str
    count: int
    restart: RestartPolicy
    meta: Mapping[str, str]
    tasks: tuple[TaskSpec, ...]


@dataclass(frozen=True)
class JobSpec:
    id: str
    name: str
    type: str
    namespace: str
    region: str
    datacenters: tuple[str, ...]
    meta: Mapping[str, str]
    groups: tuple[GroupSpec, ...] = field(default_factory=tuple)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise LocalRunError(f"{where} must be a duration in nanoseconds, not {value!r}")
    return float(value) / NS


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LocalRunError(f"{where} must be an object of strings")
    return {str(k): str(v) for k, v in value.items()}


def _signal(name: Any, where: str) -> int:
    if not name:
        # Nomad's own default is SIGINT; the compiler always sets KillSignal explicitly, and a
        # task without one gets SIGTERM, the signal every Python program handles by default.
        return int(signal.SIGTERM)
    text = str(name).upper()
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal.Signals, text))
    except AttributeError:
        raise LocalRunError(f"{where}: unknown KillSignal {name!r}") from None


def _restart(raw: Any, job_type: str, where: str) -> RestartPolicy:
    base = dict(DEFAULT_RESTART.get(job_type, DEFAULT_RESTART["service"]))
    if raw is not None:
        if not isinstance(raw, Mapping):
            raise LocalRunError(f"{where}.RestartPolicy must be an object")
        base.update({k: v for k, v in raw.items() if v is not None})
    mode = base.get("Mode", "fail")
    if mode not in ("fail", "delay"):
        raise LocalRunError(f"{where}.RestartPolicy.Mode must be fail or delay, not {mode!r}")
    attempts = base.get("Attempts")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise LocalRunError(f"{where}.RestartPolicy.Attempts must be a whole number >= 0")
    return RestartPolicy(
        attempts=attempts,
        interval=_seconds(base["Interval"], f"{where}.RestartPolicy.Interval"),
        delay=_seconds(base["Delay"], f"{where}.RestartPolicy.Delay"),
        mode=cast(Literal["fail", "delay"], mode),  # checked above
    )


def _task(raw: Any, group: str, job_type: str, where: str) -> TaskSpec:
    if not isinstance(raw, Mapping) or not raw.get("Name"):
        raise LocalRunError(f"{where} must be an object with a Name")
    name = str(raw["Name"])
    where = f"task {name} of group {group}"
    driver = str(raw.get("Driver") or "")
    if driver not in DRIVERS:  # every driver a compiled job may name runs here too
        raise LocalRunError(
            f"{where} uses the {driver or 'missing'} driver; the local executor runs "
            f"{', '.join(DRIVERS)} tasks only"
        )
    config = raw.get("Config") or {}
    if not isinstance(config, Mapping):
        raise LocalRunError(f"{where}: Config must be an object")
    command = config.get("command")
    if driver != "docker" and (not isinstance(command, str) or not command):
        raise LocalRunError(f"{where} has no Config.command to run")
    args = config.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise LocalRunError(f"{where}: Config.args must be a list of strings")
    lifecycle = raw.get("Lifecycle") or None
    hook: str | None = None
    sidecar = False
    if lifecycle:
        hook = str(lifecycle.get("Hook") or "")
        if hook not in ("prestart", "poststart", "poststop"):
            raise LocalRunError(
                f"{where}: Lifecycle.Hook {hook!r} is not prestart, poststart or poststop"
            )
        sidecar = bool(lifecycle.get("Sidecar", False))
    log = {**DEFAULT_LOG, **(raw.get("LogConfig") or {})}
    resources = raw.get("Resources") or {}
    templates = []
    for t in raw.get("Templates") or []:
        if t.get("SourcePath") and not t.get("EmbeddedTmpl"):
            raise LocalRunError(
                f"{where}: template {t.get('DestPath')} reads SourcePath on a Nomad node; the "
                "local executor renders embedded templates only"
            )
        if not t.get("DestPath"):
            raise LocalRunError(f"{where}: a template has no DestPath")
        templates.append(
            Template(
                content=str(t.get("EmbeddedTmpl") or ""),
                dest=str(t["DestPath"]),
                left=str(t.get("LeftDelim") or "{{"),
                right=str(t.get("RightDelim") or "}}"),
                perms=str(t.get("Perms") or "0644"),
                envvars=bool(t.get("Envvars", False)),
            )
        )
    artifacts = []
    for a in raw.get("Artifacts") or []:
        options = a.get("GetterOptions") or {}
        artifacts.append(
            Artifact(
                source=str(a.get("GetterSource") or ""),
                dest=str(a.get("RelativeDest") or "local/"),
                checksum=options.get("checksum"),
                mode=str(a.get("GetterMode") or "any"),
            )
        )
    kill_timeout = raw.get("KillTimeout")
    return TaskSpec(
        group=group,
        name=name,
        driver=driver,
        command=str(command or ""),
        args=tuple(str(a) for a in args),
        image=str(config["image"]) if config.get("image") else None,
        env=_str_map(raw.get("Env"), f"{where}: Env"),
        meta=_str_map(raw.get("Meta"), f"{where}: Meta"),
        hook=hook,
        sidecar=sidecar,
        kill_timeout=_seconds(
            DEFAULT_KILL_TIMEOUT if kill_timeout is None else kill_timeout, f"{where}: KillTimeout"
        ),
        kill_signal=_signal(raw.get("KillSignal"), where),
        log_max_files=max(1, int(log.get("MaxFiles") or DEFAULT_LOG["MaxFiles"])),
        log_max_file_size_mb=max(1, int(log.get("MaxFileSizeMB") or DEFAULT_LOG["MaxFileSizeMB"])),
        cpu=int(resources.get("CPU") or 100),
        memory_mb=int(resources.get("MemoryMB") or 300),
        templates=tuple(templates),
        artifacts=tuple(artifacts),
    )


def read_job(payload: Mapping[str, Any]) -> JobSpec:
    """`{"Job": {...}}` (or the bare job object) -> a `JobSpec`, or one clear `LocalRunError`."""
    job = payload.get("Job", payload) if isinstance(payload, Mapping) else None
    if not isinstance(job, Mapping) or not job.get("ID"):
        raise LocalRunError('the compiled job is not a Nomad job payload ({"Job": {"ID": ...}})')
    job_id = str(job["ID"])
    if "/" in job_id or job_id.startswith(".") or not job_id.strip():
        raise LocalRunError(f"job ID {job_id!r} cannot name a run directory")
    job_type = str(job.get("Type") or "service")
    if job_type not in ("service", "batch"):
        raise LocalRunError(
            f"job {job_id} has Type {job_type}; the local executor runs service and batch jobs"
        )
    raw_groups = job.get("TaskGroups") or []
    if not raw_groups:
        raise LocalRunError(f"job {job_id} has no task groups to run")
    groups = []
    seen: set[str] = set()
    for i, g in enumerate(raw_groups):
        if not isinstance(g, Mapping) or not g.get("Name"):
            raise LocalRunError(f"task group {i} of job {job_id} has no Name")
        name = str(g["Name"])
        if name in seen or "/" in name or name.startswith("."):
            raise LocalRunError(f"task group name {name!r} of job {job_id} is repeated or unsafe")
        seen.add(name)
        count = g.get("Count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise LocalRunError(f"group {name}: Count must be a whole number >= 0")
        group_restart = dict(g.get("RestartPolicy") or {})
        tasks = tuple(
            replace(
                _task(t, name, job_type, f"task {j} of group {name}"),
                restart=_restart(
                    {**group_restart, **(t.get("RestartPolicy") or {})},
                    job_type,
                    f"group {name}, task {t.get('Name')}",
                ),
            )
            for j, t in enumerate(g.get("Tasks") or [])
        )
        if not tasks:
            raise LocalRunError(f"group {name} of job {job_id} has no tasks")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names) or any("/" in n or n.startswith(".") for n in names):
            raise LocalRunError(f"group {name} has repeated or unsafe task names")
        if not any(t.is_main for t in tasks):
            raise LocalRunError(f"group {name} has only lifecycle tasks; it needs a main task")
        groups.append(
            GroupSpec(
                name=name,
                count=count,
                restart=_restart(g.get("RestartPolicy"), job_type, f"group {name}"),
                meta=_str_map(g.get("Meta"), f"group {name}: Meta"),
                tasks=tasks,
            )
        )
    return JobSpec(
        id=job_id,
        name=str(job.get("Name") or job_id),
        type=job_type,
        namespace=str(job.get("Namespace") or "default"),
        region=str(job.get("Region") or "global"),
        datacenters=tuple(str(d) for d in (job.get("Datacenters") or ["dc1"])),
        meta=_str_map(job.get("Meta"), "job Meta"),
        groups=tuple(groups),
    )
