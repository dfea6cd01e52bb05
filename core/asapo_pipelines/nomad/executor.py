"""The Nomad executor behind the `Executor` interface: the core's `nomad` executor.

Compiling is `launchplan.compile` (the same job the local executor runs), talking to the
cluster is `nomad.client`. The client's settings come from NOMAD_ADDR and the other NOMAD_*
variables; the namespace the file's `deploy.nomad` section asks for wins over NOMAD_NAMESPACE.
Besides a pipeline file, the commands may name a compiled job (`*.json`, as `pipeline plan
--json` prints it) or a job already on the cluster (``--job ID``). What the commands show of a
Nomad job (its table of units and allocations, the reasons Nomad cannot place a unit) is said
here, not in the CLI.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.executor import (
    Executor,
    ExecutorStatus,
    InstanceStatus,
    status_exit_code,
    text_lines,
)
from asapo_pipelines.launchplan.jobspec import SECRETS_PATH

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.nomad.client import DeployResult, NomadClient
    from asapo_pipelines.pipeline.model import Pipeline


@dataclass
class JobTarget:
    """The job a command acts on: its ID and namespace, and its payload when known."""

    job_id: str
    namespace: str | None
    payload: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)


class NomadExecutor(Executor):
    name = "nomad"
    options = frozenset({"job", "plain"})
    # the job's id is the pipeline's name (`launchplan.compile`)
    secrets_from = "the Nomad variable " + SECRETS_PATH.format(job="{pipeline}")
    #: what the last `deploy` or `start` got from Nomad, for `show_submitted`
    last: DeployResult | None = None

    @classmethod
    def for_command(
        cls, pipeline: Pipeline | None, catalog: Catalog, file: Path | None, given: dict[str, Any]
    ) -> Executor:
        executor = cls.made(pipeline, catalog, file, given)
        if given.get("job"):
            executor.__dict__["target"] = JobTarget(str(given["job"]), None)
        elif pipeline is None and file is not None:
            executor.__dict__["target"] = _job_file_target(file)
        return executor

    @cached_property
    def target(self) -> JobTarget:
        """The pipeline file's job, compiled (a ``--job`` or a compiled job is set instead)."""
        from asapo_pipelines.launchplan.compile import compile_pipeline

        compiled = compile_pipeline(self.loaded(), self.catalog)
        job = compiled.job["Job"]
        return JobTarget(str(job["ID"]), job.get("Namespace"), compiled.job, compiled.warnings)

    @property
    def job_id(self) -> str:
        if "target" in self.__dict__ or self.pipeline is None:
            return self.target.job_id
        from asapo_pipelines.launchplan.compile import job_identity

        return job_identity(self.pipeline)[0]  # without compiling: status needs only the ID

    @property
    def namespace(self) -> str | None:
        if "target" in self.__dict__ or self.pipeline is None:
            return self.target.namespace
        from asapo_pipelines.launchplan.compile import job_identity

        return job_identity(self.pipeline)[1]

    @cached_property
    def client(self) -> NomadClient:
        from asapo_pipelines.nomad.client import NomadClient
        from asapo_pipelines.nomad.settings import NomadSettings

        return NomadClient(NomadSettings.from_env(namespace=self.namespace))

    @property
    def warnings(self) -> list[str]:
        """The compiler's warnings about the cluster (shared paths, drivers)."""
        return list(self.target.warnings)

    def _payload(self) -> dict[str, Any]:
        if self.target.payload is None:
            from asapo_pipelines.errors import UsageError

            raise UsageError("this needs a pipeline file or a compiled job, not --job ID")
        return self.target.payload

    def plan(self) -> dict[str, Any]:
        from asapo_pipelines.launchplan.jobspec import redacted
        from asapo_pipelines.nomad.errors import NomadError

        payload = self._payload()
        try:
            diff: dict[str, Any] | None = self.client.plan(payload).to_dict()
            note = None
        except NomadError as exc:
            diff, note = None, f"no comparison with the cluster: {exc}"
        return {"job": redacted(payload), "plan": diff, "note": note}

    def deploy(self, *, wait: float) -> dict[str, Any]:
        from asapo_pipelines.cli.output import warn

        payload = self._payload()
        for message in self.warnings:
            warn(message)
        self.last = self.client.deploy(_with_run(payload, self.run_id), wait=wait)
        return self.last.to_dict()

    def refuse(self, command: str) -> None:
        """Refuse `start` of a job that is not stopped before `pipeline start` records a session
        in the run (`asapo_pipelines.cli.deployments.refuse`): started again it would be the
        same allocations, and the run would count a session that never ran. A `deploy` of a
        running job is Nomad's way to update it, and goes on. `run`: a session of the run
        elsewhere (`asapo_pipelines.runs.lifecycle.refuse_while_deployed`)."""
        if command == "run":
            self._refuse_run()
        if command == "deploy":
            self._refuse_missing_variables()
        if command != "start":
            return
        from asapo_pipelines.nomad.errors import NomadError

        if not self.client.read_job(self.job_id).get("Stop"):
            raise NomadError(
                f"job {self.job_id} is already running on Nomad; stop it first with `pipeline stop`"
            )

    def _refuse_missing_variables(self) -> None:
        """Refuse a deploy whose tasks render a secret (a transport's `*_env` setting, as
        `launchplan.compile` renders each) from a Nomad variable, or a key of it, that the
        job's namespace does not hold: every task would wait on its template, never starting,
        and nothing would say why where `deploy` ran. Reading variables is an ACL capability
        apart from submitting jobs: a token without it leaves them unchecked, with a warning."""
        from asapo_pipelines.cli.output import warn
        from asapo_pipelines.errors import PipelinesError
        from asapo_pipelines.nomad.errors import NomadPermissionDenied

        if self.target.payload is None:
            return
        for path, keys in _rendered_variables(self.target.payload).items():
            try:
                held = self.client.variable_keys(path)
            except NomadPermissionDenied:
                warn(
                    f"not checked that the Nomad variable {path} holds {', '.join(keys)}: the "
                    "token may not read it; a task waits until it does"
                )
                continue
            missing = [key for key in keys if key not in (held or ())]
            if missing:
                raise PipelinesError(
                    _missing_variable(path, self.client.namespace, keys, missing, held is None)
                )

    def _refuse_run(self) -> None:
        """Refuse another session of the run (`pipeline run`) while the job the run was
        deployed as still runs, or when Nomad cannot say: a second copy would write every
        result twice. A job purged from the cluster runs no more."""
        from asapo_pipelines.nomad.errors import NomadError, NomadNotFound

        stop = f"`pipeline stop {self.file}`"
        try:
            job = self.client.read_job(self.job_id)
        except NomadNotFound:
            return
        except NomadError as exc:
            raise NomadError(
                f"the run is deployed on Nomad as job {self.job_id}, and Nomad cannot be asked "
                f"whether it still runs ({exc}); stop it first with {stop} (NOMAD_ADDR naming "
                "its cluster)"
            ) from None
        if not job.get("Stop") and job.get("Status") != "dead":
            raise NomadError(
                f"job {self.job_id} is deployed on Nomad and still runs; stop it first with {stop}"
            )

    def deployed_run(self) -> str | None:
        """The run `deploy` handed the job's tasks, read back from the job Nomad keeps
        (`RUN_META`): the cluster holds it for as long as the job can be started, whichever
        host `pipeline start` is typed on, where a file beside the pipeline file would be
        on one host only. None when Nomad holds no such job (`start` then says so itself)."""
        from asapo_pipelines.nomad.errors import NomadNotFound

        try:
            return _run_of(self.client.read_job(self.job_id))
        except NomadNotFound:
            return None

    def start(self, *, wait: float) -> dict[str, Any]:
        result = self.client.start(self.job_id, wait=wait)
        if result is None:
            return {"job": self.job_id, "already_running": True}
        self.last = result
        return result.to_dict()

    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        eval_id = self.client.stop(self.job_id, purge=purge)
        return {"job": self.job_id, "stopped": True, "purged": purge, "evaluation": eval_id}

    def status(self) -> ExecutorStatus:
        job = self.client.status(self.job_id)
        instances = []
        for alloc in job.allocations:
            # Nomad names an allocation `<job>.<group>[<index>]`
            index = alloc.name.rpartition("[")[2].rstrip("]")
            instances.append(
                InstanceStatus(
                    unit=alloc.group,
                    replica=int(index) if index.isdigit() else 0,
                    state=alloc.status,
                    task_id=alloc.id,
                    restarts=sum(t.restarts for t in alloc.tasks),
                    detail=f"on {alloc.node or '-'}, desired {alloc.desired}",
                )
            )
        return ExecutorStatus(
            executor=self.name,
            deployment=job.id,
            state=job.state,
            instances=instances,
            extra=job.to_dict(),
        )

    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        alloc = self.client.pick_allocation(self.job_id, unit, replica)
        yield from text_lines(
            self.client.stream_logs(str(alloc["ID"]), unit, stderr=stderr, follow=follow)
        )

    # -- what the user sees ------------------------------------------------------------------
    def describe(self, what: str, result: dict[str, Any]) -> str:
        return f"job {self.job_id} {what}"

    def show_plan(self, *, as_json: bool) -> None:
        """The compiled job, then what would change on the cluster. With --json stdout holds
        the job alone, `{"Job": {...}}` as Nomad's HTTP API and `nomad job run -json` take it
        (and every command here, as a compiled job file), and the comparison goes to stderr."""
        from asapo_pipelines.cli.output import print_json, warn

        for message in self.warnings:
            warn(message)
        planned = self.plan()
        if as_json:
            print_json(planned["job"])
        else:
            click.echo(json.dumps(planned["job"], indent=2))
        if planned["note"]:
            warn(planned["note"])
            return
        diff = planned["plan"]
        say = click.echo if not as_json else partial(click.echo, err=True)
        say("changes against the cluster:" if diff["changes"] else "no changes")
        for line in diff["changes"]:
            say(f"  {line}")
        for failure in diff["placement_failures"]:
            for reason in failure["reasons"]:
                say(f"! unit {failure['unit']} cannot be placed: {reason}")

    def show_submitted(self, result: dict[str, Any], *, as_json: bool, start: bool) -> None:
        """The registered job (and its evaluation), or why Nomad cannot place some units."""
        from asapo_pipelines.cli.output import print_json, warn

        if result.get("already_running"):
            if as_json:
                print_json(result)
            else:
                click.echo(f"job {self.job_id} is already running")
            return
        last = self.last
        assert last is not None, "show_submitted follows deploy() or start()"
        for message in last.warnings:
            warn(f"Nomad: {message}")
        if not as_json and start:
            click.echo(f"started job {self.job_id}")
        elif not as_json:
            evaluation = last.evaluation
            state = (
                f" (evaluation {evaluation.eval_id[:8]} {evaluation.status})" if evaluation else ""
            )
            click.echo(f"registered job {last.job_id} in namespace {last.namespace}{state}")
        _report_failures(last, as_json)

    def show_stop(self, result: dict[str, Any], *, as_json: bool) -> None:
        from asapo_pipelines.cli.output import print_json

        if as_json:
            print_json(result)
            return
        done = "stopped and purged" if result["purged"] else "stopped"
        eval_id = result.get("evaluation")
        click.echo(
            f"{done} job {self.job_id}" + (f" (evaluation {eval_id[:8]})" if eval_id else "")
        )

    def show_status(self, *, as_json: bool) -> int:
        """The job, its units, allocations, task states, restarts and recent events, with the
        counters the workers published (when the command was given the pipeline file); the
        exit code (`status_exit_code`: 1 for a job that failed for good)."""
        from asapo_pipelines.cli.output import print_json
        from asapo_pipelines.counters import counters_or_none, show_counters_or_say
        from asapo_pipelines.nomad.render import render_status

        result = self.client.status(self.job_id)
        with_counters = self.pipeline is not None and self.file is not None
        # a job that failed for good exits 1, as every executor's (it exited 0 here alone)
        code = status_exit_code(result.state)
        if as_json:
            data = result.to_dict()
            if with_counters:
                data["counters"] = counters_or_none(self.file)
            print_json(data)
            return code
        click.echo(render_status(result))
        if with_counters and self.file is not None:
            show_counters_or_say(self.file)
        return code

    def print_logs(self, unit: str, *, replica: int | None, follow: bool, stderr: bool) -> int:
        """The unit's log as Nomad streams it, bytes as they are."""
        self.client.logs(
            self.job_id,
            unit,
            sys.stdout.buffer,
            stderr=stderr,
            follow=follow,
            replica=replica,
            plain=bool(self.given.get("plain")),
        )
        return 0


#: The job's `Meta` key naming the run `deploy` handed its tasks (`NomadExecutor.deployed_run`)
RUN_META = "asapo_pipelines_run"


def _with_run(payload: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """The job with every task told its run, so workers never guess it, and the run in the
    job's Meta, where `pipeline start` reads it back (a copy)."""
    if run_id is None:
        return payload
    from asapo_pipelines.worker.launch import RUN_ENV

    job = json.loads(json.dumps(payload))
    job["Job"]["Meta"] = {**(job["Job"].get("Meta") or {}), RUN_META: run_id}
    for group in job["Job"].get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            task["Env"] = {**(task.get("Env") or {}), RUN_ENV: run_id}
    return job


def _run_of(job: dict[str, Any]) -> str | None:
    """The run a registered job's tasks were given: its Meta's, or for a job deployed before
    the run was kept there, the one its tasks' environment names."""
    from asapo_pipelines.worker.launch import RUN_ENV

    meta = job.get("Meta") or {}
    if meta.get(RUN_META):
        return str(meta[RUN_META])
    for group in job.get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            found = (task.get("Env") or {}).get(RUN_ENV)
            if found:
                return str(found)
    return None


def _rendered_variables(payload: dict[str, Any]) -> dict[str, list[str]]:
    """The Nomad variables the job's tasks render secrets from, with the keys they read."""
    from asapo_pipelines.launchplan.jobspec import task_secrets

    found: dict[str, list[str]] = {}
    for group in payload["Job"].get("TaskGroups") or []:
        for task in group.get("Tasks") or []:
            for ref in task_secrets(task):
                keys = found.setdefault(ref.path, [])
                if ref.key not in keys:
                    keys.append(ref.key)
    return found


def _missing_variable(
    path: str, namespace: str, keys: list[str], missing: list[str], absent: bool
) -> str:
    """The one sentence refusing a deploy whose tasks would wait for `missing`, with the
    `nomad var` command that gives it: `var put` replaces every key of a variable, so keys
    are added to one that exists through `var get` piped into it."""
    where = f"-namespace {namespace} {path}"
    items = " ".join(f"{key}=..." for key in (keys if absent else missing))
    if absent:
        lack, command = "which does not exist", f"nomad var put {where} {items}"
    else:
        lack = f"which has no {', '.join(missing)}"
        command = f"nomad var get {where} | nomad var put -namespace {namespace} -in=json - {items}"
    return (
        f"the job's tasks read {', '.join(keys)} from the Nomad variable {path} in namespace "
        f"{namespace}, {lack}, and would wait for it; give it with `{command}` (nothing was "
        "submitted)"
    )


def _report_failures(result: DeployResult, as_json: bool) -> None:
    """Each unit Nomad cannot place, with its reasons; then one sentence and a non-zero exit."""
    from asapo_pipelines.cli.output import print_json
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


def _job_file_target(path: Path) -> JobTarget:
    """A compiled job file, checked against Nomad's job schema when it is installed."""
    import jsonschema

    from asapo_pipelines.cli.output import warn
    from asapo_pipelines.errors import UsageError
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
    else:
        validator = jsonschema.Draft7Validator(json.loads(schema.read_text()))
        error = next(iter(sorted(validator.iter_errors(payload), key=lambda e: e.path)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the top level"
            raise UsageError(f"{path} is not a Nomad job payload: at {where}, {error.message}")
    job = payload["Job"]
    return JobTarget(str(job["ID"]), job.get("Namespace"), dict(payload))
