"""`pipeline new`: a starter pipeline file wired up for editor completion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from asapo_pipelines.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import UnitDescriptor

SUFFIX = ".pipeline.yaml"


def find_schema(directory: Path) -> Path | None:
    """A committed `schemas/pipeline.schema.json` in this directory or one above it."""
    for folder in (directory, *directory.parents):
        candidate = folder / "schemas" / "pipeline.schema.json"
        if candidate.is_file():
            return candidate
    return None


def _placeholder(type_text: str) -> str:
    if type_text.startswith("list"):
        return "[]"
    if type_text.startswith("dict"):
        return "{}"
    return {"int": "0", "float": "0.0", "bool": "false"}.get(type_text, '""')


def _unit_block(
    instance: str, d: UnitDescriptor, inputs: dict[str, str], outputs: dict[str, str]
) -> list[str]:
    from asapo_pipelines.unit_docs import param_rows

    lines = [f"  {instance}:", f"    unit: {d.name}"]
    rows = param_rows(d)
    if rows:
        lines.append("    params:")
        for row in rows:
            if row.required:
                lines.append(f"      {row.name}: {_placeholder(row.type)}  # required: {row.type}")
            else:
                lines.append(f"      # {row.name}: {row.default_text()}")
    for side, mapping in (("inputs", inputs), ("outputs", outputs)):
        if mapping:
            lines.append(f"    {side}:")
            for port, stream in mapping.items():
                lines.append(f"      {port}: {stream}")
    return lines


def starter_text(name: str, units: list[str], catalog: Catalog, schema_ref: str) -> str:
    """The starter file: the schema comments, then the units chained in the order given."""
    from asapo_pipelines.unit_docs import instance_name

    descriptors = [catalog.get(u) for u in units]
    lines = [
        f"# yaml-language-server: $schema={schema_ref}",
        f"# $schema: {schema_ref}",
        "#",
        "# Check it with `pipeline validate`; see `pipeline list-units` for the units.",
        f"pipeline: {name}",
        "description: ''",
        "transport:",
        "  embedded: {path: .pipeline-data}",
        "units:",
    ]
    previous: str | None = None  # the stream the previous unit writes
    used: set[str] = set()
    streams: set[str] = set()
    for d in descriptors:
        instance = instance_name(d)
        n = 2
        while instance in used:
            instance, n = f"{instance_name(d)}_{n}", n + 1
        used.add(instance)
        inputs = {}
        for port in d.inputs:
            inputs[port.name] = previous if previous is not None else f"{instance}-{port.name}"
        outputs = {}
        for port in d.outputs:
            stream = port.name.replace("_", "-")
            if stream in streams:
                stream = f"{instance}-{stream}".replace("_", "-")
            streams.add(stream)
            outputs[port.name] = stream
        if outputs:
            previous = next(iter(outputs.values()))
        lines.extend(_unit_block(instance, d, inputs, outputs))
    lines.extend(["deploy:", "  nomad: {datacenters: ['*'], driver: raw_exec}", ""])
    return "\n".join(lines)


@click.command("new")
@click.argument("name")
@click.option(
    "--unit",
    "-u",
    "units",
    multiple=True,
    help="A unit to include (repeat; they are chained in order). Default: core.files -> "
    "core.identity -> core.jsonl-sink.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    help="Where to write NAME.pipeline.yaml.",
)
@click.option(
    "--schema",
    "schema_ref",
    help="Schema URL or path for the editor comments. Default: a schemas/pipeline.schema.json "
    "found here or above, else pipeline.schema.json generated beside the new file.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def new(
    name: str, units: tuple[str, ...], directory: Path, schema_ref: str | None, force: bool
) -> None:
    """Write a starter pipeline file NAME.pipeline.yaml that editors complete and check.

    It carries the schema comments for yaml-language-server (VS Code, Neovim, Helix, ...) and
    for JetBrains IDEs.
    """
    import re

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import PIPELINE_NAME_PATTERN

    if not re.match(PIPELINE_NAME_PATTERN, name):
        raise UsageError(
            f"pipeline name {name!r} is not valid: use lower case letters, digits and -, "
            "starting with a letter"
        )
    catalog = Catalog.load()
    chosen = list(units) or ["core.files", "core.identity", "core.jsonl-sink"]
    for unit in chosen:
        catalog.get(unit)  # unknown unit: one sentence with a suggestion
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}{SUFFIX}"
    if target.exists() and not force:
        raise UsageError(f"{target} exists; use --force to overwrite it")
    if schema_ref is None:
        found = find_schema(directory.resolve())
        if found is None:
            from asapo_pipelines.schema import dumps, pipeline_schema

            found = directory / "pipeline.schema.json"
            found.write_text(dumps(pipeline_schema(catalog)), encoding="utf-8")
            click.echo(f"wrote {found} (regenerate with `pipeline schema -o {found}`)", err=True)
        schema_ref = os.path.relpath(found.resolve(), directory.resolve())
        if not schema_ref.startswith("."):
            schema_ref = "./" + schema_ref
    text = starter_text(name, chosen, catalog, schema_ref)
    if not units:
        # the default starter runs as is: fill the required params with working values
        text = text.replace('directory: ""  # required: str', "directory: data  # required: str")
        text = text.replace('path: ""  # required: str', "path: results/out.jsonl  # required: str")
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}")
