"""A validated pipeline -> a `JobPlan` -> one Nomad job.

Written against the pipeline model agreed in the project's interfaces (`Pipeline.name`, `.path`,
`.transport`, `.units`, `.streams`, `.deploy`, `Pipeline.descriptor(instance, catalog)`,
`Pipeline.params_for(instance, catalog)`); the deploy section is read by key so that a model or a
plain mapping both work.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines import CORE_DISTRIBUTION, __version__
from asapo_pipelines.nomad.errors import JobPlanError
from asapo_pipelines.nomad.jobspec import (
    DEFAULT_DRIVER,
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
from asapo_pipelines.worker.launch import BASE_DIR_ENV

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog

#: A source whose params set one of these to true keeps running, so its pipeline is a service.
KEEPS_RUNNING = ("watch", "follow", "continuous", "forever")


@dataclass
class CompiledJob:
    job: dict[str, Any]
    plan: JobPlan
    warnings: list[str] = field(default_factory=list)


def _explicit(obj: Any, key: str) -> Any:
    """A value the file actually wrote: a model's defaults are left to NOMAD_* and the cluster
    (`namespace: default` filled in by the model must not override NOMAD_NAMESPACE)."""
    fields_set = getattr(obj, "model_fields_set", None)
    if fields_set is not None and key not in fields_set:
        return None
    return _get(obj, key)


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


def _wheel(item: Any) -> Wheel:
    """A wheel from the file: `URL#sha256=<hex>` (pip's hash fragment), `{url, sha256}`, or an
    absolute path on the nodes, whose sha256 is taken now when the file is readable here."""
    if isinstance(item, Mapping):
        return Wheel(url=str(item.get("url") or ""), sha256=str(item.get("sha256") or "").lower())
    text = str(item)
    url, _, digest = text.partition("#sha256=")
    if not digest and url.startswith("/") and Path(url).is_file():
        digest = hashlib.sha256(Path(url).read_bytes()).hexdigest()
    if not digest:
        raise JobPlanError(
            f"wheel {text!r} needs its checksum: write it as {url}#sha256=<hex> so that nodes "
            "install exactly that file"
        )
    return Wheel(url=url, sha256=digest.lower())


def _canonical(requirement: str) -> str:
    name = re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def python_env(nomad: Any, pins: tuple[str, ...]) -> PythonEnv:
    spec = _dump(_get(nomad, "python"))
    if not spec:
        return CommandOnPath()
    if spec.get("venv"):
        return ExistingEnv(path=str(spec["venv"]))
    install = spec.get("install")
    if install is None:
        raise JobPlanError("deploy.nomad.python takes either venv: PATH or install: {...}")
    requirements = dict((_canonical(pin), pin) for pin in pins)
    for package in install.get("packages") or ():
        name = _canonical(str(package))
        if name in requirements and requirements[name] != package:
            raise JobPlanError(
                f"python.install.packages asks for {package} but the pipeline's units need "
                f"{requirements[name]} (the installed catalog's version)"
            )
        requirements[name] = str(package)
    return InstallEnv(
        requirements=tuple(requirements.values()),
        index_url=install.get("index_url"),
        extra_index_urls=tuple(install.get("extra_index_urls") or ()),
        wheels=tuple(_wheel(w) for w in install.get("wheels") or ()),
        python=str(install.get("python") or "python3"),
    )


def pinned_distributions(pipeline: Any, catalog: Catalog) -> tuple[str, ...]:
    """The core and every distribution providing a unit of the pipeline, at the catalog's
    versions."""
    pins = {CORE_DISTRIBUTION: __version__}
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        if descriptor.distribution and descriptor.version:
            pins.setdefault(descriptor.distribution, descriptor.version)
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))


def _resources(pipeline: Any, instance: str, catalog: Catalog) -> Resources:
    if hasattr(pipeline, "resources_for"):
        res = pipeline.resources_for(instance, catalog)
        return Resources(cpu=int(res.cpu), memory_mb=int(res.memory), gpus=int(res.gpus))
    base = pipeline.descriptor(instance, catalog).resources
    override = _get(pipeline.units[instance], "resources")
    return Resources(
        cpu=int(_get(override, "cpu") or base.cpu),
        memory_mb=int(_get(override, "memory") or base.memory),
        gpus=int(_get(override, "gpus") if _get(override, "gpus") is not None else base.gpus),
    )


def delivered_file(pipeline: Any, text: str) -> str:
    """The pipeline file as tasks get it (in their `local/`): the transport's paths, relative to
    the original file, are made absolute; everything else is left exactly as written."""
    transport = _get(pipeline, "transport")
    spec = transport.spec() if hasattr(transport, "spec") else None
    if not spec:
        return text
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never fold a long line the user did not fold
    data = yaml.load(text)
    if not isinstance(data, dict):
        return text
    section = data.get("transport")
    changed = False
    if "embedded" in spec:
        wanted = spec["embedded"]["path"]
        embedded = section.get("embedded") if isinstance(section, dict) else None
        if not isinstance(section, dict) or not isinstance(embedded, dict):
            data["transport"] = {"embedded": {"path": wanted}}
            changed = True
        elif embedded.get("path") != wanted:
            embedded["path"] = wanted
            changed = True
    elif "asapo" in spec and spec["asapo"].get("token_file") and isinstance(section, dict):
        asapo = section.get("asapo")
        if isinstance(asapo, dict) and asapo.get("token_file") != spec["asapo"]["token_file"]:
            asapo["token_file"] = spec["asapo"]["token_file"]
            changed = True
    if not changed:
        return text
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


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
    path = _get(pipeline, "path")
    if path is None:
        raise JobPlanError(
            "the pipeline was not loaded from a file, so there is nothing to deliver"
        )
    path = Path(path).resolve()
    env = {BASE_DIR_ENV: str(path.parent)}
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
                resources=_resources(pipeline, instance, catalog),
                meta={"unit": descriptor.name, "instance": instance},
            )
        )
    content = delivered_file(pipeline, path.read_text(encoding="utf-8"))
    datacenters = tuple(_get(nomad, "datacenters") or ("*",))
    plan = JobPlan(
        id=job_id,
        type=kind,
        groups=tuple(groups),
        datacenters=datacenters,
        namespace=_explicit(nomad, "namespace"),
        region=_explicit(nomad, "region"),
        meta={"pipeline": job_id, CORE_DISTRIBUTION: __version__},
        driver=_get(nomad, "driver") or DEFAULT_DRIVER,
        image=_get(nomad, "image"),
        python=python_env(nomad, pinned_distributions(pipeline, catalog)),
        files=(FileTemplate(dest=PIPELINE_DEST, content=content),),
        secrets=_secrets(pipeline, nomad, job_id),
        env=env,
    )
    return plan, warnings


def job_identity(pipeline: Any) -> tuple[str, str | None]:
    """The job ID and the namespace the file asks for (None: NOMAD_NAMESPACE decides), without
    compiling: enough to stop, start, or look at a deployed pipeline."""
    nomad = _get(_get(pipeline, "deploy"), "nomad")
    return str(pipeline.name), _explicit(nomad, "namespace")


def compile_pipeline(pipeline: Any, catalog: Catalog) -> CompiledJob:
    """ONE Nomad job for the whole pipeline, as Nomad's HTTP API JSON."""
    plan, warnings = plan_for(pipeline, catalog)
    return CompiledJob(job=compile_job(plan), plan=plan, warnings=warnings)
