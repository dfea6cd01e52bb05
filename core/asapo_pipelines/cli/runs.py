"""`pipeline runs FILE` and `pipeline reprocess FILE --from RUN`, and the run bookkeeping that
`pipeline run` does around the executor (see `asapo_pipelines.runs`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from asapo_pipelines.cli.options import data_dir_option, json_option
from asapo_pipelines.cli.output import print_json
from asapo_pipelines.cli.run import execute
from asapo_pipelines.cli.session import Session, apply_overrides, open_store
from asapo_pipelines.cli.target import resolve


# -- pipeline runs ---------------------------------------------------------------------------
def _when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _config_summary(run: Any) -> str:
    start = run.start
    parts = [f"file {str(start.get('file_sha256') or '')[:12]}"]
    if start.get("from_run"):
        parts.append(f"replay of {start['from_run']}")
    if run.overrides:
        parts.append(", ".join(f"{k}={json.dumps(v)}" for k, v in run.overrides.items()))
    changed = [e for e in run.events if e.get("changes")]
    if changed:
        parts.append(f"resumed changed x{len(changed)}")
    return "; ".join(parts)


def _counts(run: Any) -> str:
    counts = run.counts
    processed = sum(int(c.get("processed", 0)) for c in counts.values())
    errors = sum(int(c.get("errors", 0)) for c in counts.values())
    return f"{processed} processed, {errors} errors" if counts else "-"


@click.command("runs")
@click.argument("file", type=click.Path(dir_okay=False))
@data_dir_option
@json_option
def runs(file: str, data_dir: str | None, as_json: bool) -> None:
    """List FILE's runs: id, start and end, state, configuration and counts."""
    target = resolve(file, data_dir, None)
    pipeline, _catalog = target.loaded()
    transport, store = open_store(target)
    try:
        found = store.runs()
    finally:
        transport.close()
    if as_json:
        print_json({"pipeline": pipeline.name, "runs": [r.to_dict() for r in found]})
        return
    if not found:
        click.echo(f"pipeline {pipeline.name} has no runs in this store yet")
        return
    from rich.table import Table

    from asapo_pipelines.cli.output import console

    table = Table("run", "started", "ended", "state", "configuration", "counts")
    for run in found:
        table.add_row(
            run.id,
            _when(run.started),
            _when(run.ended),
            run.state,
            _config_summary(run),
            _counts(run),
        )
    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 140)
    out.print(table)


# -- pipeline reprocess ----------------------------------------------------------------------
def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def print_comparison(old_id: str, new_id: str, rows: dict[str, list[Any]]) -> None:
    click.echo(f"old ({old_id}) -> new ({new_id}):")
    for instance, items in rows.items():
        click.echo(f"{instance}:")
        for what, a, b in items:
            mark = "" if a == b else "   (changed)"
            click.echo(f"  {what}: {_show(a)} -> {_show(b)}{mark}")


@click.command("reprocess")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--from", "from_run", required=True, metavar="RUN", help="The run to replay (r3).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="UNIT.PARAM=VALUE",
    help="Override a unit parameter for the new run (repeatable).",
)
@data_dir_option
@click.pass_context
def reprocess(
    ctx: click.Context, file: str, from_run: str, sets: tuple[str, ...], data_dir: str | None
) -> None:
    """Replay RUN's source messages, as stored, through FILE's current configuration as a new
    run (no file or detector is read again), then print old against new for what each unit's
    summary declares."""
    from asapo_pipelines.local.errors import JobFailed
    from asapo_pipelines.runs import configurations
    from asapo_pipelines.runs.lifecycle import check_replayable, compare, replay, source_streams
    from asapo_pipelines.runs.overrides import flat
    from asapo_pipelines.worker.launch import RUN_ENV

    target = resolve(file, data_dir, None, compile=True)
    assert target.payload is not None
    assert target.pipeline_file is not None
    pipeline, catalog = target.loaded()
    overrides = apply_overrides(target, sets)
    transport, store = open_store(target)
    try:
        owner = store.owner()
        if owner is not None:
            store.claim(target.pipeline_file)  # refuses another file's namespace
        old = store.get(from_run)
        streams = check_replayable(transport, pipeline, catalog, old)
        store.claim(target.pipeline_file)
        new = store.begin(
            pipeline_file=target.pipeline_file,
            text=Path(target.pipeline_file).read_text(encoding="utf-8"),
            configurations=configurations(pipeline, catalog),
            overrides=flat(overrides),
            mode="reprocess",
            from_run=old.id,
        )
        copied = replay(transport, pipeline.name, streams, old, new)
    except BaseException:
        transport.close()
        raise
    click.echo(f"run {new.id} replays {copied} source messages of run {old.id}")
    sources = set(source_streams(pipeline, catalog))
    payload = json.loads(json.dumps(target.payload))
    payload["Job"]["TaskGroups"] = [
        g for g in payload["Job"]["TaskGroups"] if g["Name"] not in sources
    ]
    environ = {**os.environ, RUN_ENV: new.id}
    session = Session(store, transport, new, "started", RUN_ENV)
    result, counters = execute(target, payload, environ)
    session.finish(result, counters, payload)
    kept = {k: v for k, v in old.summaries.items() if k.partition("[")[0] not in sources}
    print_comparison(old.id, new.id, compare(kept, new.summaries))
    if result.status == "failed":
        raise JobFailed(result.message)
    click.echo(result.message)
    ctx.exit(result.exit_code)
