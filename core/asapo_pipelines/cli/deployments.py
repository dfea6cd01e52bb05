"""The runs of deployed pipelines (`pipeline deploy`, `start`, `stop` with any executor).

A deployment is a run like `pipeline run`'s: `deploy` begins or resumes it before anything is
submitted, with the same refusal of a changed configuration (`--fresh`, `--resume`), and `stop`
ends it with the workers' counts. The record lives on the pipeline's transport, which the
submitting host must reach (an embedded store on the shared filesystem, the ASAP::O service);
when it cannot, `deploy` says so and the workers record the run themselves when they start.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.output import warn

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport.base import Transport

fresh_option = click.option(
    "--fresh", is_flag=True, help="Start a new run even if the last one could be resumed."
)
resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Go on with the last run although the configuration changed.",
)


def _open(pipeline: Pipeline, catalog: Catalog) -> tuple[Transport, RunStore] | None:
    """The pipeline's transport and run store, or None (with a warning) when unreachable."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import TransportError, open_transport

    try:
        transport = open_transport(pipeline.transport.spec(), catalog)
    except TransportError as exc:
        warn(
            f"the run is not recorded: the pipeline's transport cannot be reached from here "
            f"({exc}); its workers record it when they start, without comparing the "
            "configuration with the last run"
        )
        return None
    return transport, RunStore(transport, pipeline.name)


def announce(run_id: str, what: str, pipeline: str, changes: dict[str, Any], *, err: bool) -> None:
    """The line `pipeline run` and `deploy` print about the run they work in."""
    from asapo_pipelines.runs.lifecycle import describe_changes

    if what == "started":
        click.echo(f"run {run_id} of pipeline {pipeline} starts", err=err)
    elif what == "resumed":
        click.echo(f"resuming run {run_id} of pipeline {pipeline} (unchanged)", err=err)
    else:
        click.echo(
            f"resuming run {run_id} under a changed configuration: {describe_changes(changes)}",
            err=err,
        )


def begin(
    file: str,
    executor: str,
    *,
    fresh: bool = False,
    resume: bool = False,
    restart: bool = False,
    quiet_stdout: bool = False,
) -> str | None:
    """Begin or resume FILE's run for a deployment with `executor`; its id, or None when the
    transport cannot be reached from here. Raises `RunsError` (nothing written, nothing
    submitted) when the configuration changed without --fresh or --resume. With `restart`
    (`pipeline start`: the job as it was deployed runs again) the last run gets a new session
    without comparing the file, whose changes the stopped job does not carry."""
    from asapo_pipelines.runs.lifecycle import prepare
    from asapo_pipelines.worker.launch import load

    pipeline, catalog = load(Path(file))
    opened = _open(pipeline, catalog)
    if opened is None:
        return None
    transport, store = opened
    try:
        store.claim(file)
        latest = store.latest(resumable=True) if restart else None
        if latest is not None:
            run, what = store.resume(latest, details={"executor": executor}), "resumed"
        else:
            run, what = prepare(
                store,
                pipeline,
                catalog,
                Path(file),
                fresh=fresh,
                resume=resume,
                mode="deploy",
                details={"executor": executor},
            )
    finally:
        transport.close()
    changes = run.events[-1].get("changes") or {}
    announce(run.id, what, pipeline.name, changes, err=quiet_stdout)
    return run.id


def end(file: str, executor: str, state: str, message: str = "") -> str | None:
    """End FILE's running run if `executor` deployed it, with the workers' last counts; the
    run's id, or None when there was none to end."""
    from asapo_pipelines.counters import read_status
    from asapo_pipelines.runs.lifecycle import summaries_of
    from asapo_pipelines.transport import TransportError
    from asapo_pipelines.worker.launch import load

    pipeline, catalog = load(Path(file))
    opened = _open(pipeline, catalog)
    if opened is None:
        return None
    transport, store = opened
    try:
        run = store.latest(resumable=True)
        if run is None or run.state != "running" or run.session.get("executor") != executor:
            return None
        try:
            counters: dict[str, Any] | None = read_status(Path(file))
        except TransportError:
            counters = None
        summaries, counts = summaries_of(_by_label(counters), set(pipeline.units))
        store.end(run, state, message, summaries, counts)
        return run.id
    finally:
        transport.close()


@contextmanager
def deployment_run(
    file: str | None,
    executor: str,
    *,
    fresh: bool = False,
    resume: bool = False,
    restart: bool = False,
    quiet_stdout: bool = False,
) -> Iterator[str | None]:
    """Begin the run around a submission; a submission that fails ends it as failed."""
    if file is None or Path(file).suffix == ".json":  # a compiled job: no pipeline file to record
        if fresh or resume:
            from asapo_pipelines.errors import UsageError

            raise UsageError("--fresh and --resume need a pipeline file")
        yield None
        return
    run_id = begin(
        file, executor, fresh=fresh, resume=resume, restart=restart, quiet_stdout=quiet_stdout
    )
    try:
        yield run_id
    except Exception as exc:
        if run_id is not None:
            end(file, executor, "failed", f"the deployment failed: {exc}")
        raise


def _by_label(counters: dict[str, Any] | None) -> dict[str, Any]:
    """`read_status`'s worker records keyed as `summaries_of` expects ("group[i]")."""
    workers = (counters or {}).get("workers") or []
    return {f"{w.get('instance')}[{w.get('replica') or 0}]": w for w in workers}
