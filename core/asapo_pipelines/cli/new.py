"""`pipeline new`: a starter pipeline file wired up for editor completion."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from asapo_pipelines.cli.options import complete_unit_names, json_option
from asapo_pipelines.errors import UsageError
from asapo_pipelines.unit_docs import NO_DEFAULT

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


def _numbered(path: str, suffix: str) -> str:
    """`results/out.jsonl` as a second sink's example: `results/out_2.jsonl`."""
    from pathlib import PurePosixPath

    name = PurePosixPath(path)
    return str(name.with_name(f"{name.stem}{suffix}{name.suffix}")) if name.name else path


def _unit_block(
    instance: str,
    d: UnitDescriptor,
    inputs: dict[str, str],
    outputs: dict[str, str],
    suffix: str = "",
) -> list[str]:
    """The instance's lines; `suffix` (`_2`) is its number when the unit is there already."""
    from asapo_pipelines.unit_docs import param_rows, required_value

    lines = [f"  {instance}:", f"    unit: {d.name}"]
    rows = param_rows(d, nested=False)
    if rows:
        lines.append("    params:")
        for row in rows:
            if row.required:
                value, comment = required_value(row)
                if suffix and d.role == "sink" and isinstance(row.example, str):
                    # two sinks given one example would write one file, each unaware of
                    # the other's lines: the second one's example is numbered
                    value = json.dumps(_numbered(row.example, suffix))
                lines.append(f"      {row.name}: {value}  # {comment}")
            else:
                lines.append(f"      # {row.name}: {row.default_text()}")
    for side, mapping in (("inputs", inputs), ("outputs", outputs)):
        if mapping:
            lines.append(f"    {side}:")
            for port, stream in mapping.items():
                lines.append(f"      {port}: {stream}")
    return lines


@dataclass
class Starter:
    """The starter file's text and what it needs beside it to run."""

    text: str
    #: directories the file's units read from (their examples), created beside the file
    directories: list[str] = field(default_factory=list)
    #: `instance.param` of required parameters the user must fill in (P206 until then)
    to_fill: list[str] = field(default_factory=list)
    #: `instance.port` of required inputs no earlier unit feeds
    unfed: list[str] = field(default_factory=list)
    #: the streams those read, declared external: stream -> content type
    external: dict[str, str] = field(default_factory=dict)


def _wire_inputs(
    d: UnitDescriptor, instance: str, produced: list[tuple[str, str]], starter: Starter
) -> dict[str, str]:
    """Each input reads the newest earlier stream whose content type it accepts, so
    `-u xas.scan-files -u xas.normalize -u nexus.writer` gives the writer its scans and spectra
    rather than three ports on one stream. An optional input nothing fits is left out; a
    required one reads a stream declared external (fed from outside the pipeline)."""
    from asapo_pipelines.pipeline.validate import _compatible

    inputs: dict[str, str] = {}
    for port in d.inputs:
        match = next(
            (s for s, ct in reversed(produced) if _compatible(ct, port.content_type)), None
        )
        if match is None and port.required:
            # fed from outside the pipeline (a detector, another pipeline): declared external
            match = f"{instance}-{port.name}".replace("_", "-")
            starter.external[match] = port.content_type
            starter.unfed.append(f"{instance}.{port.name}")
        if match is not None:
            inputs[port.name] = match
    return inputs


def starter_file(name: str, units: list[str], catalog: Catalog, schema_ref: str) -> Starter:
    """The starter file: the schema comments, then the units chained in the order given."""
    from asapo_pipelines.unit_docs import instance_name, param_rows

    descriptors = [catalog.get(u) for u in units]
    lines = [
        f"# yaml-language-server: $schema={schema_ref}",
        f"# $schema: {schema_ref}",
        "#",
        "# Check it with `pipeline validate`, run it with `pipeline run`; see",
        "# `pipeline list-units` and `pipeline show-unit UNIT` for the units.",
        f"pipeline: {name}",
        "description: ''",
        "transport:",
        "  embedded: {path: .pipeline-data}",
        "units:",
    ]
    starter = Starter("")
    produced: list[tuple[str, str]] = []  # (stream, content type) of earlier units' outputs
    read: set[str] = set()  # the streams some unit's input reads
    used: set[str] = set()
    for d in descriptors:
        instance = instance_name(d)
        n = 2
        while instance in used:
            instance, n = f"{instance_name(d)}_{n}", n + 1
        used.add(instance)
        inputs = _wire_inputs(d, instance, produced, starter)
        read.update(inputs.values())
        outputs = {}
        streams = {s for s, _ in produced}
        for port in d.outputs:
            stream = port.name.replace("_", "-")
            if stream in streams:
                stream = f"{instance}-{stream}".replace("_", "-")
            outputs[port.name] = stream
            produced.append((stream, port.content_type))
        for row in param_rows(d, nested=False):
            if not row.required:
                continue
            if row.example is NO_DEFAULT:
                starter.to_fill.append(f"{instance}.{row.name}")
            elif row.format == "directory-path" and isinstance(row.example, str):
                starter.directories.append(row.example)
        lines.extend(_unit_block(instance, d, inputs, outputs, instance[len(instance_name(d)) :]))
    declared = _declared_streams(name, starter.external, [s for s, _ in produced if s not in read])
    if declared:
        at = lines.index("units:")
        lines[at:at] = declared
    lines.extend(DEPLOY_LOCALLY)
    starter.text = "\n".join(lines)
    return starter


#: The starter's `deploy:` section: `pipeline run` runs on this machine, so `status`, `logs`
#: and `stop` before a first run say to start one with `pipeline run` (a file naming Nomad
#: sent them to a Nomad agent nobody runs: "cannot reach Nomad"); the cluster is one edit away.
DEPLOY_LOCALLY = [
    "# Runs on this machine (`pipeline run`). For a Nomad cluster (`pipeline deploy`), replace",
    "# `local: {}` with the nomad line below (docs/nomad.md).",
    "deploy:",
    "  local: {}",
    "  # nomad: {datacenters: ['*'], driver: raw_exec}",
    "",
]


def _declared_streams(name: str, external: dict[str, str], results: list[str]) -> list[str]:
    """The starter's `streams:` section: the streams its first units read from outside (to
    rename), and the results its last units write that no unit reads, declared as read by the
    user (`pipeline tail`), which is what the chain is for: left undeclared, a fresh starter
    validated with warning P307 that it did not mean the user to act on."""
    if not external and not results:
        return []
    declared = ["streams:"]
    for stream, content_type in external.items():
        kind = "" if content_type == "*/*" else f", content_type: {content_type}"
        declared.append(f"  {stream}: {{external: true{kind}}}  # written outside; rename")
    for stream in results:
        declared.append(
            f"  {stream}: {{description: the result}}  # read it: pipeline tail "
            f"{name}{SUFFIX} {stream}"
        )
    return declared


def starter_text(name: str, units: list[str], catalog: Catalog, schema_ref: str) -> str:
    return starter_file(name, units, catalog, schema_ref).text


@click.command("new", short_help="Write a starter pipeline file set up for editors.")
@click.argument("name")
@click.option(
    "--unit",
    "-u",
    "units",
    multiple=True,
    shell_complete=complete_unit_names,
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
@json_option
def new(
    name: str,
    units: tuple[str, ...],
    directory: Path,
    schema_ref: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write a starter pipeline file NAME.pipeline.yaml that editors complete and check.

    It carries the schema comments for yaml-language-server (VS Code, Neovim, Helix, ...) and
    for JetBrains IDEs. Required parameters get the unit's example value (a directory it reads
    is created beside the file, so the file runs as written) or, without one, an empty value
    marked REQUIRED that `pipeline validate` reports (P206) until you fill it in.
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
    wrote: list[str] = []
    if schema_ref is None:
        found = find_schema(directory.resolve())
        if found is None:
            from asapo_pipelines.schema import dumps, pipeline_schema

            found = directory / "pipeline.schema.json"
            found.write_text(dumps(pipeline_schema(catalog)), encoding="utf-8")
            wrote.append(str(found))
            if not as_json:
                click.echo(
                    f"wrote {found} (regenerate with `pipeline schema -o {found}`)", err=True
                )
        schema_ref = os.path.relpath(found.resolve(), directory.resolve())
        if not schema_ref.startswith("."):
            schema_ref = "./" + schema_ref
    starter = starter_file(name, chosen, catalog, schema_ref)
    target.write_text(starter.text, encoding="utf-8")
    created = []
    for folder in dict.fromkeys(starter.directories):
        # relative paths in params are relative to the pipeline file's folder
        path = directory / folder
        if not path.exists():
            path.mkdir(parents=True)
            created.append(str(path))
    if as_json:
        from asapo_pipelines.cli.output import print_json

        print_json(
            {
                "file": str(target),
                "units": chosen,
                "schema": schema_ref,
                "wrote": [*wrote, str(target)],
                "created_directories": created,
                "to_fill": starter.to_fill,
                "unfed_inputs": starter.unfed,
            }
        )
        return
    click.echo(f"wrote {target}")
    for made in created:
        click.echo(f"created {made}/ (put the files to read there)")
    if starter.to_fill:
        click.echo(
            f"fill in the parameters marked REQUIRED ({', '.join(starter.to_fill)}); "
            "`pipeline validate` reports them (P206) until you do",
            err=True,
        )
    if starter.unfed:
        click.echo(
            f"no earlier unit produces what {', '.join(starter.unfed)} accepts: it reads a "
            "stream declared external (written outside the pipeline); rename it to yours",
            err=True,
        )
