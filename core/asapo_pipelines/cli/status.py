"""`pipeline status PIPELINE_FILE`: the counters each worker of a local pipeline published."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from asapo_pipelines.cli.options import json_option
from asapo_pipelines.cli.output import console, print_json


def read_status(pipeline_file: Path) -> dict[str, Any]:
    """The last status of each unit replica, and the error count of each unit."""
    from asapo_pipelines.transport import EndOfStream, open_transport
    from asapo_pipelines.worker.launch import load
    from asapo_pipelines.worker.naming import errors_source, status_source

    pipeline, catalog = load(pipeline_file)
    transport = open_transport(pipeline.transport.spec(), catalog)
    workers: list[dict[str, Any]] = []
    errors: dict[str, int] = {}
    try:
        with transport.consumer(status_source(pipeline.name), "pipeline-status") as consumer:
            for info in consumer.streams():
                try:
                    workers.append(dict(consumer.get_last(info.name).metadata))
                except EndOfStream:
                    continue
        with transport.consumer(errors_source(pipeline.name), "pipeline-status") as consumer:
            for info in consumer.streams():
                errors[info.name] = info.message_count or info.last_id
    finally:
        transport.close()
    for name in sorted(pipeline.units):
        if not any(w.get("instance") == name for w in workers):
            workers.append(
                {
                    "instance": name,
                    "unit": pipeline.units[name].unit,
                    "replica": 0,
                    "state": "not started",
                }
            )
    workers.sort(key=lambda w: (str(w.get("instance")), int(w.get("replica", 0))))
    return {"pipeline": pipeline.name, "workers": workers, "error_messages": errors}


def _age(t: Any, now: float) -> str:
    if not isinstance(t, int | float):
        return "-"
    seconds = max(0.0, now - t)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _is_local(pipeline_file: Path) -> bool:
    """A pipeline on the embedded transport runs on this machine: its workers' counters are in
    its store. Anything else (an ASAP::O pipeline, a compiled job file) is Nomad's business."""
    if pipeline_file.suffix == ".json" or not pipeline_file.is_file():
        return False
    from asapo_pipelines.worker.launch import load

    pipeline, _catalog = load(pipeline_file)
    return bool(pipeline.transport.kind == "embedded")


@click.command("status")
@click.argument("pipeline_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--job", "job", metavar="ID", help="A job already on the Nomad cluster.")
@json_option
@click.pass_context
def status(ctx: click.Context, pipeline_file: Path | None, job: str | None, as_json: bool) -> None:
    """Show how a pipeline is doing.

    For a pipeline on the embedded transport (run on this machine): the counters each worker
    published (received, processed, errors, retries, rate, backlog, lag) and the error counts.
    Otherwise, or with --job: the Nomad job's units, allocations and task states.
    """
    if job is not None or pipeline_file is None or not _is_local(pipeline_file):
        from asapo_pipelines.cli.nomad_cmds import status as nomad_status

        ctx.invoke(
            nomad_status,
            file=None if pipeline_file is None else str(pipeline_file),
            job=job,
            as_json=as_json,
        )
        return
    data = read_status(pipeline_file)
    if as_json:
        print_json(data)
        return
    from rich.table import Table

    now = time.time()
    table = Table(title=f"pipeline {data['pipeline']}", title_justify="left")
    columns = (
        "unit",
        "replica",
        "state",
        "received",
        "processed",
        "errors",
        "retries",
        "rate/s",
        "backlog",
        "lag",
        "last message",
        "updated",
    )
    for column in columns:
        table.add_column(column, no_wrap=True)
    for w in data["workers"]:
        table.add_row(
            str(w.get("instance")),
            str(w.get("replica", 0)),
            str(w.get("state", "-")),
            *(str(w.get(k, "-")) for k in ("received", "processed", "errors", "retries")),
            str(w.get("rate", "-")),
            str(w.get("backlog", "-")),
            f"{w['lag_seconds']:.2f}s" if isinstance(w.get("lag_seconds"), float) else "-",
            _age(w.get("last_message_time"), now),
            _age(w.get("time"), now),
        )
    console().print(table)
    from asapo_pipelines.worker.status import summary_lines

    for line in summary_lines(data["workers"]):
        click.echo(line)
    total = sum(data["error_messages"].values())
    if total:
        click.echo(
            f"{total} message(s) on the error streams of: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(data["error_messages"].items()))
        )
