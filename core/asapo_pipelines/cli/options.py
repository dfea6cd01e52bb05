"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path

import click

from asapo_pipelines.errors import UsageError
from asapo_pipelines.pipeline import DEFAULT_DATA_DIR

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table."
)
strict_option = click.option(
    "--strict",
    is_flag=True,
    envvar="ASAPO_PIPELINES_STRICT",
    help="Fail (exit 1) when any plugin is broken. Also set by ASAPO_PIPELINES_STRICT=1.",
)


def complete_unit_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of unit names from the listing (cached: no plugin is imported)."""
    from click.shell_completion import CompletionItem

    from asapo_pipelines.listing import load_listing

    try:
        units = load_listing(strict=False).units
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [
        CompletionItem(u["name"], help=u["summary"])
        for u in units
        if u["name"].startswith(incomplete)
    ]


def complete_stream_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion of the streams named in the pipeline file given before (and `errors`)."""
    from click.shell_completion import CompletionItem

    names = {"errors"}
    try:
        from ruamel.yaml import YAML

        doc = YAML(typ="safe").load(Path(str(ctx.params.get("file"))).read_text())
        for spec in (doc.get("units") or {}).values():
            for side in ("inputs", "outputs"):
                names.update(str(v) for v in (spec.get(side) or {}).values())
    except Exception:  # no file yet, or not readable: offer what is known
        pass
    return [CompletionItem(n) for n in sorted(names) if n.startswith(incomplete)]


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the local executor keeps its jobs' state and logs, under runs/<job> (default: "
    f"the pipeline's embedded transport directory, or {DEFAULT_DATA_DIR} next to FILE); run "
    "records live on the transport (`pipeline runs`).",
)
run_dir_option = click.option(
    "--run-dir", type=click.Path(file_okay=False), help="A run directory (<data>/runs/<job>)."
)


def find_file(what: str = "the pipeline file") -> Path:
    """The one pipeline file in the current directory, for commands called without FILE;
    `what` names what else the command would take."""
    found = sorted(Path.cwd().glob("*.pipeline.yaml"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(f"give {what} (there is no *.pipeline.yaml here)")
    names = ", ".join(p.name for p in found)
    raise UsageError(f"give {what} (there are several here: {names})")
