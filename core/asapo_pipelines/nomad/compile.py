"""A validated pipeline -> a `JobPlan` -> one Nomad job.

Typed against the pipeline file's model (`asapo_pipelines.pipeline.model.Pipeline`): every caller
passes a validated model, so fields are read directly; what the file left out is told apart from
what it wrote by pydantic's `model_fields_set`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines import CORE_DISTRIBUTION, __version__
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
    TaskGroupPlan,
    TaskResources,
    Wheel,
    compile_job,
)
from asapo_pipelines.worker.launch import BASE_DIR_ENV

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import NomadConfig, Pipeline, PythonEnvConfig

#: A source whose params set one of these to true keeps running, so its pipeline is a service.
KEEPS_RUNNING = ("watch", "follow", "continuous", "forever")


@dataclass
class CompiledJob:
    job: dict[str, Any]
    plan: JobPlan
    warnings: list[str] = field(default_factory=list)


def _explicit(nomad: NomadConfig, key: str) -> str | None:
    """A value the file actually wrote: the model's defaults are left to NOMAD_* and the cluster
    (`namespace: default` filled in by the model must not override NOMAD_NAMESPACE)."""
    if key not in nomad.model_fields_set:
        return None
    return str(getattr(nomad, key))


def job_type(pipeline: Pipeline, catalog: Catalog) -> JobType:
    """`batch` when every source ends (and nothing is fed from outside), else `service`."""
    if any(stream.external for stream in pipeline.streams.values()):
        return "service"
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        if descriptor.role != "source":
            continue
        # each unit has its own params model: a source that keeps running names one of these
        params = pipeline.params_for(instance, catalog)
        if any(bool(getattr(params, key, False)) for key in KEEPS_RUNNING):
            return "service"
    return "batch"


def _wheel(item: str | dict[str, str]) -> Wheel:
    """A wheel from the file: `URL#sha256=<hex>` (pip's hash fragment), `{url, sha256}`, or an
    absolute path on the nodes, whose sha256 is taken now when the file is readable here."""
    if isinstance(item, dict):
        return Wheel(url=item["url"], sha256=item["sha256"].lower())
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


def python_env(python: PythonEnvConfig | None, pins: tuple[str, ...]) -> PythonEnv:
    """The tasks' Python from an executor's `python:` section (Nomad's, Slurm's): the command on
    the nodes' PATH when there is none."""
    if python is None or (python.venv is None and python.install is None):
        return CommandOnPath()
    if python.venv:
        return ExistingEnv(path=python.venv)
    install = python.install
    if install is None:
        raise JobPlanError("deploy.nomad.python takes either venv: PATH or install: {...}")
    requirements = dict((_canonical(pin), pin) for pin in pins)
    for package in install.packages:
        name = _canonical(package)
        if name in requirements and requirements[name] != package:
            raise JobPlanError(
                f"python.install.packages asks for {package} but the pipeline's units need "
                f"{requirements[name]} (the installed catalog's version)"
            )
        requirements[name] = package
    return InstallEnv(
        requirements=tuple(requirements.values()),
        index_url=install.index_url,
        extra_index_urls=tuple(install.extra_index_urls),
        wheels=tuple(_wheel(w) for w in install.wheels),
        python=install.python,
    )


def pinned_distributions(pipeline: Pipeline, catalog: Catalog) -> tuple[str, ...]:
    """The core and every distribution providing a unit of the pipeline, at the catalog's
    versions."""
    pins = {CORE_DISTRIBUTION: __version__}
    for instance in pipeline.units:
        descriptor = pipeline.descriptor(instance, catalog)
        if descriptor.distribution and descriptor.version:
            pins.setdefault(descriptor.distribution, descriptor.version)
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))


def _resources(pipeline: Pipeline, instance: str, catalog: Catalog) -> TaskResources:
    res = pipeline.resources_for(instance, catalog)
    return TaskResources(cpu=res.cpu, memory_mb=res.memory, gpus=res.gpus)


def delivered_file(pipeline: Pipeline, text: str) -> str:
    """The pipeline file as tasks get it (in their `local/`): the transport's paths, relative to
    the original file, are made absolute; everything else is left exactly as written."""
    spec = pipeline.transport.spec()
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


def _secrets(pipeline: Pipeline, job_id: str) -> tuple[NomadVarSecret, ...]:
    token_env = (pipeline.transport.spec().get("asapo") or {}).get("token_env")
    if not token_env:
        return ()
    # Read on the node from the job's own variable path, which the job's workload identity may
    # read without any extra ACL policy.
    return (NomadVarSecret(env=token_env, path=f"nomad/jobs/{job_id}", key=token_env),)


def plan_for(pipeline: Pipeline, catalog: Catalog) -> tuple[JobPlan, list[str]]:
    nomad = pipeline.deploy.nomad
    warnings: list[str] = []
    job_id = pipeline.name
    kind = job_type(pipeline, catalog)
    if pipeline.transport.kind == "embedded":
        warnings.append(
            "the embedded transport keeps its data on each node's disk; on a cluster use the "
            "asapo transport, or an absolute path on a filesystem all nodes share"
        )
    if pipeline.path is None:
        raise JobPlanError(
            "the pipeline was not loaded from a file, so there is nothing to deliver"
        )
    path = pipeline.path.resolve()
    env = {BASE_DIR_ENV: str(path.parent)}
    groups = []
    for instance, unit in pipeline.units.items():
        descriptor = pipeline.descriptor(instance, catalog)
        groups.append(
            TaskGroupPlan(
                name=instance,
                count=unit.replicas,
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
    plan = JobPlan(
        id=job_id,
        type=kind,
        groups=tuple(groups),
        datacenters=tuple(nomad.datacenters),
        namespace=_explicit(nomad, "namespace"),
        region=_explicit(nomad, "region"),
        meta={"pipeline": job_id, CORE_DISTRIBUTION: __version__},
        driver=nomad.driver,
        image=nomad.image,
        python=python_env(nomad.python, pinned_distributions(pipeline, catalog)),
        files=(FileTemplate(dest=PIPELINE_DEST, content=content),),
        secrets=_secrets(pipeline, job_id),
        env=env,
    )
    return plan, warnings


def job_identity(pipeline: Pipeline) -> tuple[str, str | None]:
    """The job ID and the namespace the file asks for (None: NOMAD_NAMESPACE decides), without
    compiling: enough to stop, start, or look at a deployed pipeline."""
    return pipeline.name, _explicit(pipeline.deploy.nomad, "namespace")


def compile_pipeline(pipeline: Pipeline, catalog: Catalog) -> CompiledJob:
    """ONE Nomad job for the whole pipeline, as Nomad's HTTP API JSON."""
    plan, warnings = plan_for(pipeline, catalog)
    return CompiledJob(job=compile_job(plan), plan=plan, warnings=warnings)
