"""`pipeline runs FILE`: the runs recorded on the pipeline's transport, whatever executor ran
them (see `asapo_pipelines.runs`; `pipeline reprocess` is the local executor's command)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from asapo_pipelines.cli.options import PipelineFile, checked_file, find_file, json_option
from asapo_pipelines.cli.output import print_json, warn
from asapo_pipelines.errors import PipelinesError, UsageError


# -- pipeline runs ---------------------------------------------------------------------------
def _when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _config_summary(run: Any) -> str:
    start = run.start
    # the file the last session ran with (what its results carry), and the first one's
    now, first = str(run.file_sha256 or "")[:12], str(start.get("file_sha256") or "")[:12]
    parts = [f"file {now}" + (f" (started as {first})" if first and first != now else "")]
    if start.get("from_run"):
        parts.append(f"replay of {start['from_run']}")
    if run.overrides:
        parts.append(_overrides(run))
    changed = [e for e in run.events if e.get("changes")]
    if changed:
        parts.append(f"resumed changed x{len(changed)}")
    return "; ".join(parts)


#: an override a session did not have (its value may be anything JSON, null too)
_NONE = object()


def _overrides(run: Any) -> str:
    """The last session's `--set` overrides, each that came with a later session than the
    first saying since which: unmarked, one given at a resume read as if the whole run, its
    first sessions too, had been made with it (`--json`'s `session_list` has every session's)."""
    sessions = run.sessions
    shown = []
    for key, value in run.overrides.items():
        since = len(sessions)
        # back through the sessions that ran with this same value, up to the first of them
        while since > 1 and sessions[since - 2]["overrides"].get(key, _NONE) == value:
            since -= 1
        note = f" (since session {since})" if since > 1 else ""
        shown.append(f"{key}={json.dumps(value)}{note}")
    return ", ".join(shown)


def _counts(run: Any, order: Sequence[str] = ()) -> str:
    """`processed: files 150, normalize 150, writer 150; 0 errors`: each unit's count (its
    replicas' added up), in the pipeline file's order (`order`; units it no longer has after
    it). One sum over the units read 150 files through three units as "450 processed"."""
    counts = run.counts
    if not counts:
        return "-"
    per_unit: dict[str, int] = {}
    for name, c in counts.items():
        instance = name.partition("[")[0]  # a replica's: `normalize[1]`
        per_unit[instance] = per_unit.get(instance, 0) + int(c.get("processed", 0))
    known = {name: i for i, name in enumerate(order)}
    units = sorted(per_unit, key=lambda u: (known.get(u, len(known)), u))
    errors, again, changed = (
        sum(int(c.get(key, 0)) for c in counts.values())
        for key in ("errors", "redelivered", "changed_not_sent")
    )
    # messages handed out again after a worker was killed, and keys a source had sent before
    # with other content (whose new content reached no unit): said only when there were any
    return (
        "processed: "
        + ", ".join(f"{u} {per_unit[u]}" for u in units)
        + f"; {errors} errors"
        + (f", {again} redelivered" if again else "")
        + (f", {changed} changed after sent, not sent again" if changed else "")
    )


def _under_old_names(transport: Any, name: str, file: Path) -> list[str]:
    """One line for each other pipeline name in this store whose runs `file` owns
    (`runs.renamed.under_old_names`), which `runs` under the new name would otherwise pass
    over in silence."""
    from asapo_pipelines.cli.deployments import session_executor
    from asapo_pipelines.executor import LOCAL
    from asapo_pipelines.runs.renamed import under_old_names

    lines = []
    for store in under_old_names(transport, name, file):
        found = store.runs()
        last, old = found[-1], store.pipeline
        n = f"{len(found)} run{'' if len(found) == 1 else 's'}"
        found_as, what = "", "list or go on with them"
        if last.state == "running" and session_executor(last) == LOCAL:
            # `status` and `stop` find a local run by its run directory, which records the file
            found_as = f", found by `pipeline status {file}` and `stop` as the file is now"
        elif last.state == "running":  # a deployment its executor knows by the old name only
            what = "list, stop or go on with them"
        lines.append(
            f"{file} has {n} under its old name {old} (the last, {last.id}, {last.state}"
            f"{found_as}): put `pipeline: {old}` back in {file} to {what}"
        )
    return lines


# no --data-dir: the runs are recorded on the pipeline's transport, which the file names;
# --data-dir of `pipeline run` moves only the local executor's run directories
@click.command("runs")
@click.argument("file", required=False, type=PipelineFile())
@json_option
def runs(file: str | None, as_json: bool) -> None:
    """List FILE's runs (without FILE: the one pipeline file here): id, start and end, state,
    configuration and counts.

    The runs are recorded on the transport FILE names, wherever `pipeline run --data-dir` put
    their local run directories.
    """
    from asapo_pipelines.cli.executors import load_for_records, say_whose_runs
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    # without FILE: the one pipeline file here, as `status` and `stop` find it
    file = str(checked_file(Path(file)) if file else find_file())
    if Path(file).suffix == ".json":  # a compiled job holds no transport settings
        raise UsageError(
            f"this needs the pipeline file (.pipeline.yaml), not {Path(file).resolve()}"
        )
    pipeline, catalog = load_for_records(Path(file), "showing the runs recorded on its transport")
    transport = open_transport(pipeline.transport.spec(), catalog, read_only=True)
    store = RunStore(transport, pipeline.name)
    try:
        say_whose_runs(transport, pipeline.name, Path(file))
        found = store.runs()
        try:
            renamed = _under_old_names(transport, pipeline.name, Path(file))
        except PipelinesError:  # a hint only: another pipeline's damaged records are its own
            renamed = []
    finally:
        transport.close()
    for line in renamed:
        warn(line)
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
            _counts(run, list(pipeline.units)),
        )
    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 140)
    out.print(table)
    for run in found:  # why a run failed: too long for a column, and what the reader looks for
        why = (run.last_end or {}).get("message")
        if run.state == "failed" and why:
            out.print(f"{run.id} failed: {why}", markup=False, highlight=False)
