"""A validated pipeline -> a `JobPlan` -> one Nomad job.

Written against the pipeline model agreed in the project's interfaces (`Pipeline.name`, `.path`,
`.transport`, `.units`, `.streams`, `.deploy`, `Pipeline.descriptor(instance, catalog)`,
`Pipeline.params_for(instance, catalog)`); the deploy section is read by key so that a model or a
plain mapping both work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines import __version__
from asapo_pipelines.nomad.errors import JobPlanError
from asapo_pipelines.nomad.jobspec import (
    PIPELINE_DEST,
    CommandOnPath,
    ExistingEnv,
    FileTemplate,
    InstallEnv,
    JobPlan,
    JobType,
    NomadVarSecret,
    PythonEnv,
    Resources,
    TaskGroupPlan,
    Wheel,
    compile_job,
)

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog

#: A source whose params set one of these to true keeps running, so its pipeline is a service.
KEEPS_RUNNING = ("watch", "follow", "continuous", "forever")
CORE_DISTRIBUTION = "asapo-pipelines"


@dataclass
class CompiledJob:
    job: dict[str, Any]
    plan: JobPlan
    warnings: list[str] = field(default_factory=list)


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _dump(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True)
    if isinstance(obj, Mapping):
        return {k: _dump(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_dump(v) for v in obj]
    return obj


def job_type(pipeline: Any, catalog: Catalog) -> JobType:
    """`batch` when every source ends (and nothing is fed from outside), else `service`."""
    for stream in (_get(pipeline, "streams") or {}).values():
        if _get(stream, "external", False):
            return "service"
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        if descriptor.role != "source":
            continue
        params = pipeline.params_for(instance, catalog)
        if any(bool(_get(params, key, False)) for key in KEEPS_RUNNING):
            return "service"
    return "batch"


def python_env(nomad: Any, pins: tuple[str, ...]) -> PythonEnv:
    spec = _dump(_get(nomad, "python"))
    if not spec:
        return CommandOnPath()
    if spec.get("venv"):
        return ExistingEnv(path=str(spec["venv"]))
    install = spec.get("install")
    if install is not None:
        wheels = tuple(
            Wheel(url=str(w["url"]), sha256=str(w["sha256"]).lower())
            for w in install.get("wheels") or ()
        )
        return InstallEnv(
            requirements=pins,
            index_url=install.get("index_url"),
            extra_index_urls=tuple(install.get("extra_index_urls") or ()),
            wheels=wheels,
            python=str(install.get("python") or "python3"),
        )
    raise JobPlanError("deploy.nomad.python takes either venv: PATH or install: {...}")


def pinned_distributions(pipeline: Any, catalog: Catalog) -> tuple[str, ...]:
    """The core and every distribution providing a unit of the pipeline, at the catalog's
    versions."""
    pins = {CORE_DISTRIBUTION: __version__}
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        if descriptor.distribution and descriptor.version:
            pins.setdefault(descriptor.distribution, descriptor.version)
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))


def _resources(unit: Any, descriptor: Any) -> Resources:
    base = descriptor.resources
    override = _get(unit, "resources")
    return Resources(
        cpu=int(_get(override, "cpu") or base.cpu),
        memory_mb=int(_get(override, "memory") or base.memory),
        gpus=int(_get(override, "gpus") if _get(override, "gpus") is not None else base.gpus),
    )


def _secrets(pipeline: Any, nomad: Any, job_id: str) -> tuple[NomadVarSecret, ...]:
    out: dict[str, NomadVarSecret] = {}
    for env, spec in (_dump(_get(nomad, "secrets")) or {}).items():
        out[env] = NomadVarSecret(
            env=env,
            path=str(spec.get("variable") or f"nomad/jobs/{job_id}"),
            key=str(spec.get("key") or env),
        )
    transport = _get(pipeline, "transport")
    spec = transport.spec() if hasattr(transport, "spec") else _dump(transport) or {}
    token_env = (spec.get("asapo") or {}).get("token_env")
    if token_env and token_env not in out:
        # Read on the node from the job's own variable path, which the job's workload identity
        # may read without any extra ACL policy.
        out[token_env] = NomadVarSecret(env=token_env, path=f"nomad/jobs/{job_id}", key=token_env)
    return tuple(out.values())


def plan_for(pipeline: Any, catalog: Catalog) -> tuple[JobPlan, list[str]]:
    deploy = _get(pipeline, "deploy")
    nomad = _get(deploy, "nomad")
    warnings: list[str] = []
    job_id = str(pipeline.name)
    kind = job_type(pipeline, catalog)
    transport = _get(pipeline, "transport")
    if _get(transport, "kind") == "embedded":
        warnings.append(
            "the embedded transport keeps its data on each node's disk; on a cluster use the "
            "asapo transport, or an absolute path on a filesystem all nodes share"
        )
    groups = []
    for instance, unit in pipeline.units.items():
        descriptor = pipeline.descriptor(instance, catalog)
        groups.append(
            TaskGroupPlan(
                name=instance,
                count=int(_get(unit, "replicas", 1)),
                args=(
                    "worker",
                    "${NOMAD_TASK_DIR}/" + PIPELINE_DEST.removeprefix("local/"),
                    instance,
                    "--replica",
                    "${NOMAD_ALLOC_INDEX}",
                ),
                resources=_resources(unit, descriptor),
                meta={"unit": descriptor.name, "instance": instance},
            )
        )
    content = Path(pipeline.path).read_text(encoding="utf-8")
    datacenters = tuple(_get(nomad, "datacenters") or ("*",))
    plan = JobPlan(
        id=job_id,
        type=kind,
        groups=tuple(groups),
        datacenters=datacenters,
        namespace=_get(nomad, "namespace"),
        region=_get(nomad, "region"),
        meta={"pipeline": job_id, "asapo-pipelines": __version__},
        driver=_get(nomad, "driver") or "raw_exec",
        image=_get(nomad, "image"),
        python=python_env(nomad, pinned_distributions(pipeline, catalog)),
        files=(FileTemplate(dest=PIPELINE_DEST, content=content),),
        secrets=_secrets(pipeline, nomad, job_id),
    )
    return plan, warnings


def compile_pipeline(pipeline: Any, catalog: Catalog) -> CompiledJob:
    """ONE Nomad job for the whole pipeline, as Nomad's HTTP API JSON."""
    plan, warnings = plan_for(pipeline, catalog)
    return CompiledJob(job=compile_job(plan), plan=plan, warnings=warnings)
