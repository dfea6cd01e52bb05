"""`pipeline suggestions`: the inbox of agents' plan suggestions, and a person's decisions.

The inbox belongs to the bridge that submits suggestions to an experiment queue
(`bluesky.queue`, distribution asapo-pipelines-bluesky); this command is its front end and
imports the plugin only when run.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from asapo_pipelines.cli.options import PipelineFile, checked_file
from asapo_pipelines.cli.output import warn
from asapo_pipelines.errors import UsageError

PLUGIN = "asapo_pipelines_bluesky.inbox_cli"


def _inbox() -> ModuleType:
    try:
        return importlib.import_module(PLUGIN)
    except ModuleNotFoundError:
        raise UsageError(
            "the suggestion inbox comes with the bluesky plugin: "
            "pip install asapo-pipelines-bluesky (plugins/bluesky in the repository)"
        ) from None


def _age(iso: str) -> str:
    return iso[:19].replace("T", " ") if iso else "-"


#: the numbers shown in the table (all of them are in --json)
KEY_NUMBERS = 4


def _numbers(numbers: dict[str, Any]) -> str:
    parts = []
    for key, value in list(numbers.items())[:KEY_NUMBERS]:
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key} {value}")
    return ", ".join(parts)


def _why(entry: Any) -> str:
    return entry.reason + (f" [{entry.state_reason}]" if entry.state_reason else "")


def _run(entry: Any) -> str:
    """The run the bridge received `entry` in ("" outside a run, in an older inbox, and from a
    bluesky plugin older than the run column)."""
    return str(getattr(entry, "run", "") or "")


def _confidence(entry: Any) -> str:
    return "-" if entry.confidence is None else f"{entry.confidence:.2f}"


def _table(entries: list[Any]) -> None:
    from rich.table import Table

    from asapo_pipelines.cli.output import console, wide

    out = console()
    if not wide(out):
        _print_narrow(out, entries)
        return
    table = Table(title="Suggestions", title_justify="left")
    # the run first: rows come in the order received, so each run's suggestions stand together
    for column in ("run", "id", "state", "action"):
        table.add_column(column, no_wrap=True)
    for column in ("target", "scans", "confidence", "reason", "numbers"):
        table.add_column(column, overflow="fold")
    for e in entries:
        # the full reason and every number are in --json; the table keeps to one screen
        table.add_row(
            _run(e) or "-",
            e.uid[:12],
            e.state,
            e.action,
            e.target,
            str(e.scans),
            _confidence(e),
            _why(e),
            _numbers(e.numbers),
        )
    out.print(table)


def _print_narrow(out: Any, entries: list[Any]) -> None:
    """80 columns or a pipe: a block per suggestion, its reason wrapped below it, instead of a
    table whose eight columns would each be cut to a few letters (an agent's reason then took
    some 50 lines of 5 letters, and its target was cut inside words)."""
    import textwrap

    from rich.text import Text

    text = Text("Suggestions\n")
    width = max(40, out.width - 4)
    for e in entries:
        text.append(e.uid[:12], style="bold")
        text.append(f"  {e.state}  {e.action}  {e.target}\n")
        numbers = ", ".join(
            [
                *([f"run {_run(e)}"] if _run(e) else []),
                f"scans {e.scans}",
                f"confidence {_confidence(e)}",
                *filter(None, [_numbers(e.numbers)]),
            ]
        )
        for line in textwrap.wrap(numbers, width, break_on_hyphens=False):
            text.append(f"    {line}\n")
        for line in textwrap.wrap(_why(e), width, break_on_hyphens=False):
            text.append(f"    {line}\n", style="dim")
    out.print(text, end="")


@click.command("suggestions", short_help="The inbox of agents' suggestions: list, approve, reject.")
@click.argument("file", type=PipelineFile(path_type=Path))
@click.argument("action", required=False, type=click.Choice(["list", "approve", "reject"]))
# the brackets say it is optional, as for the action: click prints a metavar as given
@click.argument("suggestion_id", metavar="[ID]", required=False)
@click.option("--reason", default="", help="Why (required to reject; recorded with the decision).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the list, or the decision).")
@click.option(
    "--offline", is_flag=True, help="List the states as last seen; do not ask the queue server."
)
def suggestions(
    file: Path,
    action: str | None,
    suggestion_id: str | None,
    reason: str,
    as_json: bool,
    offline: bool,
) -> int:
    """List the suggestions of FILE's queue bridge, or approve or reject one by ID.

    \b
      pipeline suggestions FILE                       # state, reason, confidence, numbers
      pipeline suggestions FILE approve ID            # queue it now (once)
      pipeline suggestions FILE reject ID --reason TEXT

    ID may be the first characters of a suggestion's uid. Each decision is recorded with when,
    who and the reason given.
    """
    # a misspelled FILE is said as every other command says it, with the file meant
    file = checked_file(file)
    inbox = _inbox()
    action = action or "list"
    if action == "list":
        if suggestion_id:
            raise UsageError("`pipeline suggestions FILE` lists; give approve or reject before ID")
        entries, notes = inbox.listing(file, refresh=not offline)
        for note in notes:
            # each says what the listing cannot vouch for (a queue server that does not answer)
            warn(note)
        if as_json:
            click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        elif not entries:
            click.echo("no suggestions yet")
        else:
            _table(entries)
        return 0
    if not suggestion_id:
        raise UsageError(f"give the ID of the suggestion to {action}")
    by = inbox.bridge.person()
    if action == "approve":
        entry = inbox.approve(file, suggestion_id, by=by, reason=reason)
    else:
        entry = inbox.reject(file, suggestion_id, by=by, reason=reason)
    if as_json:
        click.echo(json.dumps(entry.to_json(), indent=2))
    else:
        what = "approved and " + entry.state if action == "approve" else "rejected"
        detail = f": {entry.state_reason}" if entry.state_reason and action == "approve" else ""
        click.echo(f"suggestion {entry.uid[:12]} {what}{detail}")
    return 0
