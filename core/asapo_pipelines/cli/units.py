"""`pipeline list-units`, `show-unit` and `plugins`: browsing what is installed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.options import complete_unit_names, json_option, strict_option
from asapo_pipelines.cli.output import (
    console,
    print_json,
    warn,
    warn_broken_plugins,
    warn_plugin_list_typos,
    wide,
)
from asapo_pipelines.kinds import KINDS, STATUSES

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.text import Text

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import Port, UnitDescriptor
    from asapo_pipelines.listing import Listing
    from asapo_pipelines.unit_docs import ParamRow

#: what a connector does; shown beside its kind, and accepted by --kind
ROLES = ("source", "sink")
_KIND_TITLES = {"connector": "Connectors", "processor": "Processors", "agent": "Agents"}


def _listing(strict: bool) -> Listing:
    from asapo_pipelines.listing import load_listing

    listing = load_listing(strict=strict)
    warn_broken_plugins(listing)
    warn_plugin_list_typos()
    return listing


def _ports_text(ports: list[dict[str, Any]], *, inputs: bool = True) -> str:
    """Port names, an optional input marked `?`; outputs unmarked, since every output is
    optional to connect (validation warns, P308, it never fails)."""
    return ", ".join(p["name"] + ("" if p["required"] or not inputs else "?") for p in ports) or "-"


@click.command("list-units")
@click.option(
    "--kind",
    type=click.Choice([*KINDS, *ROLES]),
    help="Only units of this kind (source and sink select connectors by role).",
)
@click.option("--namespace", "-n", help="Only units in this namespace (e.g. xas).")
@click.option("--status", type=click.Choice(STATUSES), help="Only units with this status.")
@json_option
@strict_option
def list_units(
    kind: str | None, namespace: str | None, status: str | None, as_json: bool, strict: bool
) -> None:
    """List the installed units, grouped by kind.

    Broken plugins are reported on stderr and the healthy units still list (exit 0), unless
    --strict is given.
    """
    listing = _listing(strict)
    units = listing.filter(kind=kind, namespace=namespace, status=status)
    if as_json:
        print_json({"units": units, "broken_plugins": listing.broken})
        return
    if not units:
        click.echo("no units match." if listing.units else "no units installed.")
        return
    out = console()
    for group in KINDS:
        members = [u for u in units if u["kind"] == group]
        if members:
            out.print(_units_view(_KIND_TITLES[group], members, out))


def _kind_text(u: dict[str, Any]) -> str:
    # the kind as --kind spells it; a connector's role after it
    return u["kind"] if u["role"] == u["kind"] else f"{u['kind']} ({u['role']})"


def _units_view(title: str, members: list[dict[str, Any]], out: Console) -> Any:
    """A table on a wide terminal; narrower (80 columns, a pipe), one block per unit: its
    name, kind, version and status on a line, the summary and ports wrapped below."""
    from rich.table import Table
    from rich.text import Text

    if wide(out):
        view = Table(title=title, title_justify="left", expand=False)
        for column in ("name", "kind", "version", "status"):
            view.add_column(column, no_wrap=True)
        for column in ("summary", "inputs", "outputs"):
            view.add_column(column, overflow="fold")
        for u in members:
            view.add_row(
                u["name"],
                _kind_text(u),
                u["version"] or "",
                u["status"],
                u["summary"],
                _ports_text(u["inputs"]),
                _ports_text(u["outputs"], inputs=False),
            )
        return view
    import textwrap

    text = Text(title + "\n", style="bold")
    for u in members:
        text.append(f"  {u['name']}", style="bold")
        text.append(f"  {_kind_text(u)}, {u['version'] or '-'}, {u['status']}\n")
        ports = f"in: {_ports_text(u['inputs'])}  out: {_ports_text(u['outputs'], inputs=False)}"
        for line in (u["summary"], ports):
            text.append(
                textwrap.fill(line, out.width, initial_indent="    ", subsequent_indent="    ")
            )
            text.append("\n")
    return text


def _show_ports(title: str, ports: tuple[Port, ...], *, inputs: bool) -> None:
    """A table of ports; only inputs have a `required` column: an output left unconnected is
    a warning (P308, its messages are dropped), never an error, whatever its descriptor says."""
    from rich.table import Table

    if not ports:
        return
    table = Table(title=title, title_justify="left")
    columns = ("port", "content type", "format", "required", "description")
    for column in columns if inputs else [c for c in columns if c != "required"]:
        table.add_column(column, overflow="fold")
    for p in ports:
        required = ["yes" if p.required else "no"] if inputs else []
        table.add_row(p.name, p.content_type, p.format, *required, p.description)
    console().print(table)


def _params_text(rows: list[ParamRow]) -> Text:
    """One line `name: type = default  (constraints)` per parameter, its description wrapped
    and indented below: readable at 80 columns and piped, unlike a five-column table."""
    import textwrap

    from rich.text import Text

    from asapo_pipelines.unit_docs import NO_DEFAULT

    width = max(40, console().width)
    text = Text()
    for r in rows:
        indent = "  " * (r.name.count(".") + 1)
        text.append(indent)
        text.append(r.name.rsplit(".", 1)[-1], style="bold")
        text.append(f": {r.type}")
        if r.required:
            text.append("  (required)", style="yellow")
        elif isinstance(r.default, dict) and any(x.name.startswith(r.name + ".") for x in rows):
            text.append("  (fields below)")
        else:
            text.append(f" = {r.default_text()}")
        if r.constraints:
            text.append(f"  [{r.constraints}]", style="cyan")
        if r.example is not NO_DEFAULT:
            text.append(f"  e.g. {json.dumps(r.example)}", style="dim")
        text.append("\n")
        if r.description:
            pad = indent + "    "
            wrapped = textwrap.fill(
                r.description, width=width, initial_indent=pad, subsequent_indent=pad
            )
            text.append(wrapped + "\n", style="dim")
    return text


@click.command("show-unit")
@click.argument("name", shell_complete=complete_unit_names)
@json_option
def show_unit(name: str, as_json: bool) -> None:
    """Describe one unit: ports, parameters and a YAML snippet to paste into a pipeline."""
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.listing import Listing
    from asapo_pipelines.unit_docs import example_snippet, param_rows

    catalog = Catalog.load(strict=False)
    warn_broken_plugins(Listing.from_catalog(catalog))
    descriptor: UnitDescriptor = catalog.get(name)
    # the table below shows the defaults as they are; a default the unit refuses is its
    # plugin's bug, which the reader should hear before pasting the example
    for problem in descriptor.params_default_problems():
        warn(problem)
    rows = param_rows(descriptor)
    snippet = example_snippet(descriptor)
    if as_json:
        data = descriptor.summary_dict()
        data["description"] = descriptor.description
        data["params"] = [r.to_dict() for r in rows]
        data["params_schema"] = descriptor.params_schema()
        data["example"] = snippet
        print_json(data)
        return
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.text import Text

    out = console()
    head = Text()
    head.append(descriptor.name, style="bold")
    head.append(f"  {descriptor.role}, {descriptor.status}, ")
    head.append(f"{descriptor.distribution} {descriptor.version}")
    body = Text(descriptor.summary)
    if descriptor.description:
        body.append("\n\n" + descriptor.description)
    out.print(Panel(body, title=head, title_align="left"))
    _show_ports("Inputs", descriptor.inputs, inputs=True)
    _show_ports("Outputs", descriptor.outputs, inputs=False)
    if rows:
        out.print(Text("Parameters", style="italic"))
        out.print(_params_text(rows))
    res = descriptor.resources
    out.print(f"Resources: cpu {res.cpu} MHz, memory {res.memory} MB, gpus {res.gpus}")
    out.print("\nExample (paste under `units:`):")
    # as wide as its longest line and never cropped: a flow mapping of defaults (`pre_edge:
    # {...}`) is longer than a terminal, and a line cut at the edge pastes as broken YAML
    width = max(len(line) for line in snippet.splitlines())
    code = Syntax(snippet, "yaml", theme="ansi_dark", background_color="default", code_width=width)
    out.print(code, crop=False, soft_wrap=True)


def _plugin_block(p: dict[str, Any]) -> Any:
    """One plugin as lines, not a table row: a table of six columns cut unit names in two on an
    80-column terminal, and names are what people copy into pipeline files. Lists wrap between
    names, never inside one."""
    from rich.text import Text

    ok = p["status"] == "ok"
    warnings = p.get("warnings", [])
    text = Text(f"{p['name']}  {p['distribution']} {p['version'] or '-'}  ", style="bold")
    text.append(p["status"], style="green" if ok else "bold red")
    if warnings:
        text.append(f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}", style="yellow")
    provides = [("units", p["units"])] + [
        (f"{kind}s", p.get(f"{kind}s", []))
        for kind in ("transport", "executor", "format", "command")
    ]
    for label, names in provides:
        if names:
            text.append(f"\n  {label:<10} " + ", ".join(names))
    for error in p["errors"]:
        # Text, not markup: error messages may contain brackets
        text.append(f"\n  ! {error}", style="red")
    for warning in warnings:
        text.append(f"\n  ? {warning}", style="yellow")
    return text


#: the listing's entries whose runtimes a plugin's record names, by the record's key
_RUNTIME_KINDS = ("units", "transports", "executors", "formats", "commands")


def _warn_missing_runtimes(listing: Listing) -> None:
    """Give each plugin's record the runtimes of its entries whose module cannot be found, as
    warnings: the sentence --strict reports as an error (`runtime_missing`), found the same
    way, never imported. Not cached: the module may be another distribution's, installed or
    removed without the plugin's own files changing. Only `plugins` pays for it, a lookup per
    runtime in directories the import system has already listed; list-units does not."""
    from asapo_pipelines.catalog import runtime_missing

    runtimes = {
        kind: {entry["name"]: entry.get("runtime") for entry in getattr(listing, kind)}
        for kind in _RUNTIME_KINDS
    }
    for record in listing.plugins:
        # after the catalog's own (a plugin that registers nothing)
        record["warnings"] = record.get("warnings", []) + [
            f"{kind[:-1]} {name}: {problem}"
            for kind in _RUNTIME_KINDS
            for name in record.get(kind, [])
            if (runtime := runtimes[kind].get(name))
            and (problem := runtime_missing(runtime)) is not None
        ]


@click.command("plugins")
@json_option
@strict_option
def plugins(as_json: bool, strict: bool) -> None:
    """List the installed plugin packages, what each provides, and why a broken one failed.

    Each plugin's units, and its backends: the transports, executors, payload formats and
    commands it registers, and a warning for each runtime whose module cannot be found (looked
    up, never imported). With --strict, as a plugin's CI runs it, every unit's params model,
    every transport's and executor's config model, and their JSON Schemas are built too, and a
    default its own rules refuse, or a model without a JSON Schema, mark the plugin broken; so
    does a runtime whose module cannot be found (an error there, not a warning), or a plugin
    executor's runtime class that is no Executor or sets another name (imported).

    A plugin that loads but registers nothing (a hook not marked @hookimpl, or misnamed) gets a
    warning, an error with --strict; so does a name in ASAPO_PIPELINES_PLUGINS or
    ASAPO_PIPELINES_DISABLE_PLUGINS that names no installed plugin (warned on stderr)."""
    from asapo_pipelines.listing import Listing, load_listing

    if strict:
        # the whole check: a listing is built from descriptors alone and cannot see defaults
        # or schemas
        from asapo_pipelines.catalog import Catalog

        catalog = Catalog.load(strict=False).check_defaults().check_runtimes()
        _check_executors(catalog)
        for plugin in catalog.plugins:
            # a plugin's CI that passes with nothing registered would ship it so
            plugin.errors.extend(plugin.warnings)
            plugin.warnings = []
        listing = Listing.from_catalog(catalog)
    else:
        listing = load_listing(strict=False)
        # what --strict reports as an error, shown as a warning: a plugin listed "ok" whose
        # unit cannot run surprises its user at `pipeline run`
        _warn_missing_runtimes(listing)
    typos = warn_plugin_list_typos()
    if as_json:
        print_json({"plugins": listing.plugins})
    else:
        for p in listing.plugins:
            console().print(_plugin_block(p))
    if strict and (listing.broken or typos):
        raise click.exceptions.Exit(1)


def _check_executors(catalog: Catalog) -> None:
    """Report each plugin's executor whose runtime class cannot serve it (no `Executor`, or
    one that sets another name: `executor_class`), which only importing it tells; executors'
    runtimes are scheduler clients, not the heavy libraries units import. The core's are
    loaded by its own tests; a runtime not found is reported already (`check_runtimes`)."""
    from asapo_pipelines import CORE_DISTRIBUTION
    from asapo_pipelines.catalog import runtime_missing
    from asapo_pipelines.executor import executor_problem

    for name, descriptor in catalog.executors.items():
        if descriptor.distribution in (None, CORE_DISTRIBUTION):
            continue
        if runtime_missing(descriptor.runtime) is not None:
            continue
        problem = executor_problem(descriptor)
        if problem is not None:
            catalog.report("executor", name, problem)
