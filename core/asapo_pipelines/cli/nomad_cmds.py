"""`pipeline deploy|start|stop|status|logs|plan` for a Nomad cluster (the nomad executor).

A command's target is a pipeline file (compiled on the fly; its `deploy.nomad` section gives the
namespace), a compiled job (`*.json`, as `pipeline plan --json` prints it), or `--job ID` for a
job already on the cluster. Connection settings come from NOMAD_ADDR, NOMAD_TOKEN,
NOMAD_NAMESPACE, NOMAD_REGION, NOMAD_CACERT, NOMAD_CLIENT_CERT/KEY and NOMAD_SKIP_VERIFY.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli import executors as dispatch
from asapo_pipelines.cli.deployments import deployment_run, fresh_option, resume_option
from asapo_pipelines.cli.deployments import end as end_run
from asapo_pipelines.cli.executors import executor_option
from asapo_pipelines.cli.options import json_option
from asapo_pipelines.cli.output import print_json, warn
from asapo_pipelines.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.nomad.client import DeployResult, JobStatus, NomadClient


@dataclass
class Target:
    job_id: str
    namespace: str | None
    payload: dict[str, Any] | None
    warnings: list[str]


def _load_job_file(path: Path) -> dict[str, Any]:
    import jsonschema

    from asapo_pipelines.nomad import schema_path

    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the job file {path}: {exc}") from None
    schema = schema_path()
    if schema is None:
        warn(f"the Nomad job schema is not installed; {path} is sent to Nomad unchecked")
        if not isinstance(payload, dict) or not isinstance(payload.get("Job"), dict):
            raise UsageError(f'{path} is not a Nomad job payload ({{"Job": {{...}}}})')
        return payload
    validator = jsonschema.Draft7Validator(json.loads(schema.read_text()))
    error = next(iter(sorted(validator.iter_errors(payload), key=lambda e: e.path)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise UsageError(f"{path} is not a Nomad job payload: at {where}, {error.message}")
    return dict(payload)


def _target(file: str | None, job: str | None, *, compile_job: bool = False) -> Target:
    if bool(file) == bool(job):
        raise UsageError("give either a pipeline file or --job ID (not both)")
    if job:
        return Target(job_id=job, namespace=None, payload=None, warnings=[])
    path = Path(str(file))
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    if path.suffix == ".json":
        payload = _load_job_file(path)
        return Target(
            job_id=str(payload["Job"]["ID"]),
            namespace=payload["Job"].get("Namespace"),
            payload=payload,
            warnings=[],
        )
    # imported here so that commands taking --job or a compiled job do not load the model
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.nomad.compile import compile_pipeline, job_identity
    from asapo_pipelines.pipeline import load_pipeline

    catalog = Catalog.load()
    pipeline = load_pipeline(path, catalog)
    if not compile_job:
        job_id, namespace = job_identity(pipeline)
        return Target(job_id=job_id, namespace=namespace, payload=None, warnings=[])
    compiled = compile_pipeline(pipeline, catalog)
    job_json = compiled.job["Job"]
    return Target(
        job_id=str(job_json["ID"]),
        namespace=job_json.get("Namespace"),
        payload=compiled.job,
        warnings=compiled.warnings,
    )


def _with_run(payload: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """The job with every task told its run, so workers never guess it (a copy)."""
    if run_id is None:
        return payload
    from asapo_pipelines.worker.launch import RUN_ENV

    job = json.loads(json.dumps(payload))
    for group in job["Job"].get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            task["Env"] = {**(task.get("Env") or {}), RUN_ENV: run_id}
    return job


def _client(target: Target) -> NomadClient:
    from asapo_pipelines.nomad.client import NomadClient
    from asapo_pipelines.nomad.settings import NomadSettings

    return NomadClient(NomadSettings.from_env(namespace=target.namespace))


file_argument = click.argument("file", required=False, type=click.Path(dir_okay=False))
job_option = click.option("--job", "job", metavar="ID", help="A job already on the cluster.")


def _report_failures(result: DeployResult, as_json: bool) -> None:
    from asapo_pipelines.nomad.errors import PlacementFailed

    if as_json:
        print_json(result.to_dict())
    failures = result.failures
    if not failures:
        return
    if not as_json:
        for failure in failures:
            for sentence in failure.sentences():
                click.echo(sentence, err=True)
    units = ", ".join(f.group for f in failures)
    raise PlacementFailed(
        f"job {result.job_id} is registered but Nomad cannot place {units} yet; it will "
        "when capacity appears, or fix the causes above and deploy again"
    )


@click.command()
@file_argument
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for scheduling.")
@fresh_option
@resume_option
@json_option
@executor_option
def deploy(
    file: str | None,
    wait: float,
    fresh: bool,
    resume: bool,
    as_json: bool,
    executor_name: str | None,
) -> None:
    """Deploy FILE with its executor: register its job on Nomad (the default) and report
    whether it could be placed, or hand it to the executor its deploy section names. A
    pipeline file's deployment is a run (see `pipeline runs`): a changed configuration is
    refused before anything is submitted unless --fresh or --resume says what to do."""
    executor = dispatch.dispatched(file, executor_name, default="nomad", own=("nomad",))
    if executor is not None:
        with deployment_run(
            file, executor.name, fresh=fresh, resume=resume, quiet_stdout=as_json
        ) as run:
            executor.run_id = run
            dispatch.deploy(executor, wait=wait, as_json=as_json)
        return
    target = _target(file, None, compile_job=True)
    assert target.payload is not None
    for message in target.warnings:
        warn(message)
    client = _client(target)
    with deployment_run(file, "nomad", fresh=fresh, resume=resume, quiet_stdout=as_json) as run:
        result = client.deploy(_with_run(target.payload, run), wait=wait)
    for message in result.warnings:
        warn(f"Nomad: {message}")
    if not as_json:
        evaluation = result.evaluation
        state = f" (evaluation {evaluation.eval_id[:8]} {evaluation.status})" if evaluation else ""
        click.echo(f"registered job {result.job_id} in namespace {result.namespace}{state}")
    _report_failures(result, as_json)


@click.command()
@file_argument
@job_option
@click.option("--wait", default=60.0, show_default=True, help="Seconds to wait for scheduling.")
@json_option
@executor_option
def start(
    file: str | None, job: str | None, wait: float, as_json: bool, executor_name: str | None
) -> None:
    """Run a stopped pipeline job again: the job as deployed, in its run (a new session)."""
    executor = (
        None if job else dispatch.dispatched(file, executor_name, default="nomad", own=("nomad",))
    )
    recorded = None if job else file
    if executor is not None:
        with deployment_run(recorded, executor.name, restart=True, quiet_stdout=as_json) as run:
            executor.run_id = run
            dispatch.deploy(executor, wait=wait, as_json=as_json, start=True)
        return
    target = _target(file, job)
    with deployment_run(recorded, "nomad", restart=True, quiet_stdout=as_json):
        result = _client(target).start(target.job_id, wait=wait)
    if result is None:
        if as_json:
            print_json({"job": target.job_id, "already_running": True})
        else:
            click.echo(f"job {target.job_id} is already running")
        return
    if not as_json:
        click.echo(f"started job {target.job_id}")
    _report_failures(result, as_json)


@click.command()
@file_argument
@job_option
@click.option("--purge", is_flag=True, help="Also remove the job from Nomad at once.")
@json_option
def stop(file: str | None, job: str | None, purge: bool, as_json: bool = False) -> None:
    """Stop the pipeline's job (its allocations stop; --purge forgets it)."""
    target = _target(file, job)
    eval_id = _client(target).stop(target.job_id, purge=purge)
    if file and not job and Path(file).suffix != ".json":
        end_run(file, "nomad", "stopped", f"job {target.job_id} stopped")
    if as_json:
        print_json({"job": target.job_id, "stopped": True, "purged": purge, "evaluation": eval_id})
        return
    done = "stopped and purged" if purge else "stopped"
    click.echo(f"{done} job {target.job_id}" + (f" (evaluation {eval_id[:8]})" if eval_id else ""))


def render_status(status: JobStatus) -> str:
    lines = [
        f"job {status.id}: {status.type}, {'stopped' if status.stopped else status.status}, "
        f"version {status.version}, namespace {status.namespace}, "
        f"datacenters {', '.join(status.datacenters) or '-'}"
    ]
    columns = ["Queued", "Starting", "Running", "Complete", "Failed", "Lost"]
    width = max([4, *(len(g) for g in status.groups)])
    lines.append(f"{'unit':<{width}}  " + "  ".join(f"{c.lower():>8}" for c in columns))
    for name, counts in status.groups.items():
        cells = "  ".join(f"{counts.get(c, 0):>8}" for c in columns)
        lines.append(f"{name:<{width}}  {cells}")
    if status.allocations:
        lines.append("allocations:")
    for alloc in status.allocations:
        lines.append(
            f"  {alloc.id[:8]} {alloc.name} on {alloc.node or '-'}: {alloc.status} "
            f"(desired {alloc.desired}, modified {alloc.modified or '-'})"
        )
        for task in alloc.tasks:
            failed = ", failed" if task.failed else ""
            restarts = f"{task.restarts} restart{'' if task.restarts == 1 else 's'}"
            lines.append(f"    task {task.name}: {task.state}{failed}, {restarts}")
            for event in task.events:
                message = f": {event['message']}" if event["message"] else ""
                lines.append(f"      {event['time']} {event['type']}{message}")
    for failure in status.failures:
        lines.extend(f"! {sentence}" for sentence in failure.sentences())
    return "\n".join(lines)


@click.command()
@file_argument
@job_option
@json_option
def status(file: str | None, job: str | None, as_json: bool) -> None:
    """Show the job, its units, allocations, task states, restarts and recent events."""
    target = _target(file, job)
    result = _client(target).status(target.job_id)
    if as_json:
        print_json(result.to_dict())
    else:
        click.echo(render_status(result))


@click.command()
@click.argument("args", nargs=-1, required=True)
@job_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output.")
@click.option("--stderr", is_flag=True, help="Show stderr instead of stdout.")
@click.option("--replica", type=int, default=None, help="Which replica of the unit.")
@click.option("--plain", is_flag=True, help="Ask Nomad for plain text instead of frames.")
def logs(
    args: tuple[str, ...],
    job: str | None,
    follow: bool,
    stderr: bool,
    replica: int | None,
    plain: bool,
) -> None:
    """Print a unit's log: `logs FILE UNIT` or `logs --job ID UNIT`."""
    if job and len(args) == 1:
        file, unit = None, args[0]
    elif not job and len(args) == 2:
        file, unit = args
    else:
        raise UsageError("usage: pipeline logs FILE UNIT, or pipeline logs --job ID UNIT")
    target = _target(file, job)
    _client(target).logs(
        target.job_id,
        unit,
        sys.stdout.buffer,
        stderr=stderr,
        follow=follow,
        replica=replica,
        plain=plain,
    )


@click.command(name="plan")
@file_argument
@json_option
@executor_option
def plan(file: str | None, as_json: bool, executor_name: str | None) -> None:
    """Show FILE's compiled Nomad job and what would change on the cluster (or what its
    deploy section's executor would submit)."""
    from asapo_pipelines.nomad.errors import NomadError

    executor = dispatch.dispatched(file, executor_name, default="nomad", own=("nomad",))
    if executor is not None:
        dispatch.plan(executor)
        return

    target = _target(file, None, compile_job=True)
    assert target.payload is not None
    for message in target.warnings:
        warn(message)
    diff: dict[str, Any] | None = None
    note = ""
    try:
        diff = _client(target).plan(target.payload).to_dict()
    except NomadError as exc:
        note = f"no comparison with the cluster: {exc}"
    from asapo_pipelines.nomad.jobspec import redacted

    shown = redacted(target.payload)
    if as_json:
        print_json({"job": shown, "plan": diff, "note": note or None})
        return
    click.echo(json.dumps(shown, indent=2))
    if note:
        warn(note)
        return
    assert diff is not None
    click.echo("changes against the cluster:" if diff["changes"] else "no changes")
    for line in diff["changes"]:
        click.echo(f"  {line}")
    for failure in diff["placement_failures"]:
        for reason in failure["reasons"]:
            click.echo(f"! unit {failure['unit']} cannot be placed: {reason}")
