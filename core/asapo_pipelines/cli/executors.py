"""`plan`, `deploy`, `start`, `stop`, `status` and `logs` through the `Executor` interface.

The core's executors keep their own commands and output (`cli/nomad_cmds.py` for Nomad,
`cli/run.py` for local runs); a pipeline whose `deploy:` section names another executor (a
plugin's, or `local` for `deploy`), or a command given `--executor NAME`, is dispatched here to
that executor's runtime, and shown the same way whatever the executor. `status` adds the
counters the workers published on the transport, so they show for every executor.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.output import print_json
from asapo_pipelines.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.executor import Executor

executor_option = click.option(
    "--executor",
    "executor_name",
    metavar="NAME",
    default=None,
    help="The executor to use: one the file's deploy section names, or any installed one "
    "(see `pipeline plugins`).",
)


def dispatched(
    file: str | None, name: str | None, *, default: str | None, own: tuple[str, ...]
) -> Executor | None:
    """The executor FILE's command goes to when it is not one of `own` (the executors whose
    established command handles it); None to let that command run."""
    if name in own:
        return None
    if not file or Path(file).suffix == ".json":
        if name is not None:
            raise UsageError("--executor needs a pipeline file")
        return None
    path = Path(file)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.executor import choose_executor, open_executor
    from asapo_pipelines.pipeline import load_pipeline

    catalog = Catalog.load()
    pipeline = load_pipeline(path, catalog)
    descriptor = choose_executor(pipeline, catalog, name, default=default)
    if descriptor is None or descriptor.name in own:
        return None
    return open_executor(descriptor, pipeline, catalog, path)


def _said(executor: Executor, what: str, result: dict[str, Any]) -> str:
    detail = result.get("message") or result.get("status") or ""
    suffix = f": {detail}" if detail else ""
    return f"{what} pipeline {executor.pipeline.name} with the {executor.name} executor{suffix}"


def plan(executor: Executor) -> None:
    print_json(executor.plan())


def deploy(executor: Executor, *, wait: float, as_json: bool, start: bool = False) -> None:
    result = executor.start(wait=wait) if start else executor.deploy(wait=wait)
    if as_json:
        print_json(result)
    else:
        click.echo(_said(executor, "started" if start else "deployed", result))


def stop(executor: Executor, *, purge: bool, as_json: bool) -> None:
    result = executor.stop(purge=purge)
    if as_json:
        print_json(result)
    else:
        click.echo(_said(executor, "stopped", result))


def status(executor: Executor, *, as_json: bool) -> int:
    """Print the executor's view of the tasks and the workers' counters; 1 when it failed."""
    from asapo_pipelines.cli.status import read_status, show_counters
    from asapo_pipelines.transport import TransportError

    state = executor.status()
    code = 1 if state.state == "failed" else 0
    if as_json:
        try:
            counters: dict[str, Any] | None = read_status(executor.file)
        except TransportError:
            counters = None
        print_json({**asdict(state), "counters": counters})
        return code
    from rich.table import Table

    from asapo_pipelines.cli.output import console

    table = Table(title=f"{state.executor} {state.deployment}: {state.state}", title_justify="left")
    for column in ("unit", "replica", "state", "task", "restarts", "detail"):
        table.add_column(column)
    for i in state.instances:
        table.add_row(i.unit, str(i.replica), i.state, i.task_id or "-", str(i.restarts), i.detail)
    console().print(table)
    try:
        show_counters(executor.file, as_json=False)
    except TransportError as exc:  # the tasks may not have created the transport's data yet
        click.echo(f"no counters yet: {exc}")
    return code


def logs(executor: Executor, unit: str, *, replica: int | None, follow: bool, stderr: bool) -> None:
    for line in executor.logs(unit, replica=replica, follow=follow, stderr=stderr):
        click.echo(line)
