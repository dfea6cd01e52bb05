"""A validated pipeline -> a `JobPlan` -> one job in Nomad's job JSON (`CompiledJob`).

The one job is run by the local runner (`pipeline run`, which reads it back) and by a Nomad
cluster alike, so compiling is no backend's own: both executors import it from here, and the
Nomad backend keeps only what talks to a cluster. The file's `deploy.nomad` section (datacenters,
driver, namespace, the workers' Python) is read because it is the job's, whichever runs it.

What every executor's job shares (its type, the delivered pipeline file, the workers' Python)
comes from the rest of `asapo_pipelines.launchplan`; the job format is `launchplan.jobspec`.

Typed against the pipeline file's model (`asapo_pipelines.pipeline.model.Pipeline`): every caller
passes a validated model, so fields are read directly; what the file left out is told apart from
what it wrote by pydantic's `model_fields_set`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asapo_pipelines import CORE_DISTRIBUTION, __version__
from asapo_pipelines.launchplan.errors import LaunchPlanError
from asapo_pipelines.launchplan.job import delivered_file, job_type
from asapo_pipelines.launchplan.jobspec import (
    PIPELINE_DEST,
    SECRETS_PATH,
    FileTemplate,
    JobPlan,
    NomadVarSecret,
    TaskGroupPlan,
    TaskResources,
    compile_job,
)
from asapo_pipelines.launchplan.python_env import pinned_distributions, python_env
from asapo_pipelines.worker.launch import BASE_DIR_ENV
from asapo_pipelines.worker.naming import JOB_TYPE_ENV

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import NomadConfig, Pipeline


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


def _resources(pipeline: Pipeline, instance: str, catalog: Catalog) -> TaskResources:
    res = pipeline.resources_for(instance, catalog)
    return TaskResources(cpu=res.cpu, memory_mb=res.memory, gpus=res.gpus)


def secret_variables(pipeline: Pipeline) -> list[tuple[str, str]]:
    """Each transport setting naming an environment variable (`*_env`: asapo's `token_env`,
    redis's `password_env`, a plugin's), with that variable, whatever the transport: its
    workers read a secret from it."""
    settings = pipeline.transport.config.model_dump(exclude_none=True)
    return [
        (key, value)
        for key, value in settings.items()
        if key.endswith("_env") and isinstance(value, str) and value
    ]


def _secrets(pipeline: Pipeline, job_id: str) -> tuple[NomadVarSecret, ...]:
    """Every variable a `*_env` setting names, rendered into the tasks' environment from the
    job's own Nomad variable (key: the variable's name), which the job's workload identity may
    read without any extra ACL policy: Nomad tasks do not get the environment of the shell
    that deploys them, and the value never appears in the job."""
    path = SECRETS_PATH.format(job=job_id)
    names = dict.fromkeys(variable for _key, variable in secret_variables(pipeline))
    return tuple(NomadVarSecret(env=name, path=path, key=name) for name in names)


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
        raise LaunchPlanError(
            "the pipeline was not loaded from a file, so there is nothing to deliver"
        )
    path = pipeline.path.resolve()
    # a service's workers wait for more when their inputs are finished; a batch's end
    env = {BASE_DIR_ENV: str(path.parent), JOB_TYPE_ENV: kind}
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
        python=python_env(
            nomad.python, pinned_distributions(pipeline, catalog, "nomad"), "deploy.nomad.python"
        ),
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
