"""`pipeline runs FILE` and `pipeline reprocess FILE --from RUN`, and the run bookkeeping that
`pipeline run` does around the executor (see `asapo_pipelines.runs`)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from asapo_pipelines.cli.options import json_option
from asapo_pipelines.cli.output import print_json
from asapo_pipelines.cli.run import Target, data_dir_option, execute, resolve


@dataclass
class Session:
    """One `pipeline run` (or reprocess) working in a run: ends it in the record."""

    store: Any
    transport: Any
    run: Any
    what: str
    env_name: str

    def finish(self, result: Any, counters: dict[str, Any], payload: dict[str, Any]) -> None:
        from asapo_pipelines.runs.lifecycle import summaries_of

        groups = {g["Name"] for g in payload["Job"]["TaskGroups"]}
        summaries, counts = summaries_of(counters, groups)
        try:
            self.store.end(self.run, result.status, result.message, summaries, counts)
        finally:
            self.transport.close()


def _open_store(target: Target) -> tuple[Any, Any]:
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    transport = open_transport(target.pipeline.transport.spec(), target.catalog)
    return transport, RunStore(transport, target.pipeline.name)


def _overrides(target: Target, sets: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Parse and check `--set`s (RunsError, exit 1, nothing written), and apply them."""
    from asapo_pipelines.errors import UsageError
    from asapo_pipelines.runs import RunsError
    from asapo_pipelines.runs.overrides import apply, parse

    try:
        overrides = parse(sets)
        apply(target.pipeline, target.catalog, overrides)
    except UsageError as exc:
        raise RunsError(exc.message) from None
    return overrides


def start_session(
    target: Target, *, fresh: bool, resume: bool, sets: tuple[str, ...], quiet_stdout: bool = False
) -> Session:
    """Claim the namespace and start or resume the run; one sentence and nothing written when
    the configuration changed without --fresh or --resume. With `quiet_stdout` (`--json`), what
    it says goes to stderr, so stdout holds the JSON document only."""
    from asapo_pipelines.cli.deployments import announce
    from asapo_pipelines.runs.lifecycle import prepare
    from asapo_pipelines.worker.launch import RUN_ENV

    overrides = _overrides(target, sets)
    assert target.pipeline_file is not None
    transport, store = _open_store(target)
    try:
        store.claim(target.pipeline_file)
        run, what = prepare(
            store,
            target.pipeline,
            target.catalog,
            Path(target.pipeline_file),
            fresh=fresh,
            resume=resume,
            overrides=overrides,
        )
    except BaseException:
        transport.close()
        raise
    changes = run.events[-1].get("changes") or {}
    announce(run.id, what, target.pipeline.name, changes, err=quiet_stdout)
    return Session(store, transport, run, what, RUN_ENV)


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
    transport, store = _open_store(target)
    try:
        found = store.runs()
    finally:
        transport.close()
    if as_json:
        print_json({"pipeline": target.pipeline.name, "runs": [r.to_dict() for r in found]})
        return
    if not found:
        click.echo(f"pipeline {target.pipeline.name} has no runs in this store yet")
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
    overrides = _overrides(target, sets)
    pipeline, catalog = target.pipeline, target.catalog
    transport, store = _open_store(target)
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
