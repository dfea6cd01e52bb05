"""The counters each worker of a pipeline published on its transport, as `pipeline status`
shows them beside every executor's own status, and alone when no executor runs the pipeline's
tasks (workers started by hand). They come from the transport, not from a scheduler, so they
look the same whatever started the workers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.output import console, print_json, wide
from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.transport.errors import StorageError, TransportConfigError, Unavailable

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline

#: The transport's errors that say its data cannot be read from here at all (not that the
#: workers have not written any yet).
UNREADABLE = (Unavailable, StorageError, TransportConfigError)
#: `read_status`'s key for the error records of pruned runs, per error stream, left uncounted
PRUNED_KEY = "error_messages_of_pruned_runs"
#: a pipeline file's pipeline and the catalog it was validated against (`worker.launch.load`)
Loaded = tuple["Pipeline", "Catalog"]


def read_status(pipeline_file: Path, loaded: Loaded | None = None) -> dict[str, Any]:
    """The last status of each unit replica, and the error count of each unit. `loaded`: the
    file's pipeline and catalog when the caller has them (loading them again took about as
    much CPU time as this reading, in `pipeline status`)."""
    from asapo_pipelines.transport import EndOfStream, open_transport
    from asapo_pipelines.worker.launch import load
    from asapo_pipelines.worker.naming import errors_source, status_source

    pipeline, catalog = loaded or load(pipeline_file)
    # read alone: the counters of a store archived on a read-only file system still show
    transport = open_transport(pipeline.transport.spec(), catalog, read_only=True)
    workers: list[dict[str, Any]] = []
    try:
        with transport.consumer(status_source(pipeline.name), "pipeline-status") as consumer:
            for info in consumer.streams():
                try:
                    workers.append(dict(consumer.get_last(info.name).metadata))
                except EndOfStream:
                    continue
        gone = _pruned_runs(transport, pipeline.name)
        with transport.consumer(errors_source(pipeline.name), "pipeline-status") as consumer:
            errors, of_pruned = _error_counts(consumer, gone)
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
    return {
        "pipeline": pipeline.name,
        "workers": workers,
        "error_messages": errors,
        PRUNED_KEY: of_pruned,
    }


def _pruned_runs(transport: Any, pipeline: str) -> set[str]:
    """The runs `pipeline prune --run` removed; none when the transport cannot list its data
    sources (its run records cannot be told apart from pruned ones then)."""
    from asapo_pipelines.runs.store import RunStore

    try:
        return RunStore(transport, pipeline).pruned_ids()
    except NotImplementedError:
        return set()


def _error_counts(consumer: Any, gone: set[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Per error stream: how many records of runs not pruned, and how many of pruned runs. The
    error streams are the pipeline's, shared by its runs, so a prune leaves its run's records
    there; `pipeline tail FILE errors` no longer shows them, and they must not count here
    either. Without pruned runs the streams' own counts do, without reading a message."""
    kept: dict[str, int] = {}
    of_pruned: dict[str, int] = {}
    for info in consumer.streams():
        if not gone:
            kept[info.name] = info.message_count or info.last_id
            continue
        kept[info.name], of_pruned[info.name] = _count_by_run(
            consumer, info.name, info.last_id, gone
        )
    return kept, {name: n for name, n in of_pruned.items() if n}


def _count_by_run(consumer: Any, stream: str, last_id: int, gone: set[str]) -> tuple[int, int]:
    """(records of runs not in `gone`, records of runs in `gone`) of one error stream."""
    from asapo_pipelines.worker.dedupe import provenance_run, read_metadata

    kept = pruned = 0
    for msg_id in range(1, last_id + 1):
        # the metadata even of a record whose payload is damaged: it names its run all the same
        msg = read_metadata(consumer, stream, msg_id)
        if msg is None:  # an id not written (or pruned from the store itself)
            continue
        if provenance_run(dict(msg.metadata or {})) in gone:
            pruned += 1
        else:
            kept += 1
    return kept, pruned


def _age(t: Any, now: float) -> str:
    if not isinstance(t, int | float):
        return "-"
    seconds = max(0.0, now - t)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _cells(w: dict[str, Any], now: float, again: bool = False) -> dict[str, str]:
    """A worker's counters by column name: the table's columns after unit and replica, and
    the `name value` pairs of the narrow form, so that both show the same; `redelivered` only
    with `again` (some worker was handed messages again), which keeps the table narrow."""
    from asapo_pipelines.worker.status import busy_text, rate_text

    lag = w.get("lag_seconds")
    counted = ("received", "processed", *(("redelivered",) if again else ()), "errors", "retries")
    return {
        "state": busy_text(w) or str(w.get("state", "-")),
        **{k: str(w.get(k, "-")) for k in counted},
        "rate/s": rate_text(w, unit=""),
        "backlog": "-" if w.get("backlog") is None else str(w["backlog"]),
        "lag": f"{lag:.2f}s" if isinstance(lag, float) else "-",
        "last message": _age(w.get("last_message_time"), now),
        "updated": _age(w.get("time"), now),
    }


def _table(data: dict[str, Any], now: float) -> Any:
    from rich.table import Table

    from asapo_pipelines.worker.status import session_note

    table = Table(
        title=f"pipeline {data['pipeline']}",
        title_justify="left",
        caption=session_note(data["workers"]) or None,
        caption_justify="left",
    )
    again = _again(data)
    for column in ("unit", "replica", *_cells({}, now, again)):
        table.add_column(column, no_wrap=True)
    for w in data["workers"]:
        cells = _cells(w, now, again).values()
        table.add_row(str(w.get("instance")), str(w.get("replica", 0)), *cells)
    return table


def _lines(data: dict[str, Any], now: float, width: int) -> Any:
    """Below the table's width (80 columns, a pipe): a block per worker, its name and state on
    a line and its counters wrapped below, instead of twelve columns cut to a letter each."""
    import textwrap

    from rich.text import Text

    from asapo_pipelines.worker.status import session_note

    text = Text(f"pipeline {data['pipeline']}\n", style="bold")
    again = _again(data)
    for w in data["workers"]:
        cells = _cells(w, now, again)
        text.append(f"  {w.get('instance')}[{w.get('replica', 0)}]", style="bold")
        text.append(f"  {cells.pop('state')}\n")
        pairs = ", ".join(f"{name} {value}" for name, value in cells.items())
        text.append(textwrap.fill(pairs, width, initial_indent="    ", subsequent_indent="    "))
        text.append("\n")
    if note := session_note(data["workers"]):
        text.append(textwrap.fill(note, width) + "\n")
    text.rstrip()  # print adds the last line's end
    return text


def _again(data: dict[str, Any]) -> bool:
    """Whether any worker was handed messages again (after a worker was killed)."""
    return any(w.get("redelivered") for w in data["workers"])


def show_counters(pipeline_file: Path, as_json: bool) -> None:
    """Print the counters each worker of the pipeline published on its transport, whatever
    started the workers (the local executor, a scheduler, or a person)."""
    try:
        data = read_status(pipeline_file)
    except UNREADABLE as exc:
        raise CountersUnreadable(unreadable(exc)) from None
    if as_json:
        print_json(data)
        return
    now = time.time()
    out = console()
    out.print(_table(data, now) if wide(out) else _lines(data, now, out.width))
    from asapo_pipelines.worker.status import summary_lines

    for line in summary_lines(data["workers"]):
        click.echo(line)
    if line := _errors_line(data["error_messages"], data[PRUNED_KEY]):
        click.echo(line)


def _errors_line(kept: dict[str, int], of_pruned: dict[str, int]) -> str:
    """The error records on the error streams, and how many of pruned runs were not counted
    (as `pipeline tail FILE errors` leaves them out); empty when there are none at all."""
    total, left_out = sum(kept.values()), sum(of_pruned.values())
    if not total and not left_out:
        return ""
    line = f"{total} message(s) on the error streams"
    if total:
        line += " of: " + ", ".join(f"{k} ({v})" for k, v in sorted(kept.items()) if v)
    if left_out:
        line += f" ({left_out} more of pruned runs not counted)"
    return line


def counters_or_none(pipeline_file: Path | None) -> dict[str, Any] | None:
    """`read_status`, or None when the transport holds nothing yet (or cannot be reached)."""
    from asapo_pipelines.transport import TransportError

    if pipeline_file is None:
        return None
    try:
        return read_status(pipeline_file)
    except TransportError:
        return None


def show_counters_or_say(pipeline_file: Path) -> None:
    """The counters' table beside an executor's status, or why there are none yet; a transport
    that cannot be read from here ends the command (`CountersUnreadable`, after the status)."""
    from asapo_pipelines.transport import TransportError

    try:
        show_counters(pipeline_file, as_json=False)
    except TransportError as exc:  # the tasks may not have created the transport's data yet
        click.echo(f"no counters yet: {exc}")


class CountersUnreadable(PipelinesError):
    """The workers' counters cannot be read: the pipeline's transport is unreachable from
    here, or its settings or storage are broken."""


def check_readable(pipeline_file: Path, loaded: Loaded | None = None) -> None:
    """Raise `CountersUnreadable` (one sentence, with the transport's own reason) when the
    pipeline's transport cannot be read from here: `pipeline status` must not show a table of
    `-` and exit 0 as if the workers had said nothing. `loaded`: as for `read_status`."""
    try:
        read_status(pipeline_file, loaded)
    except UNREADABLE as exc:
        raise CountersUnreadable(unreadable(exc)) from None


def unreadable(exc: Exception) -> str:
    return f"the workers' counters could not be read: {exc}"
