"""`pipeline schema`: JSON Schemas of pipeline files for editors, from the installed units."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from asapo_pipelines.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog

DEFAULT_DIR = Path("schemas")


@click.command("schema", short_help="Write the JSON Schema of pipeline files for editors.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="A `.json` file to write the whole-file schema to, or a directory to write "
    "pipeline.schema.json and units/<unit>.schema.json into. Without it the schema is printed.",
)
@click.option("--unit", help="Print (or write) the schema of one unit's entry instead.")
@click.option(
    "--check",
    is_flag=True,
    help="Compare the schemas in the --output directory (default: ./schemas) with what the "
    "installed units generate; exit 1 listing the stale files.",
)
def schema(output: Path | None, unit: str | None, check: bool) -> int:
    """Generate the draft-07 JSON Schema of pipeline files (completion and checks in editors).

    The schema lists every installed unit; regenerate it after installing or upgrading plugins.
    A unit whose params, or a transport or executor whose config, have no JSON Schema (a field
    typed Callable) is left out, with a warning; ASAPO_PIPELINES_STRICT=1 makes it an error
    (exit 1).
    """
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.cli.output import warn, warn_broken_plugins, write_file
    from asapo_pipelines.listing import Listing
    from asapo_pipelines.schema import (
        described_backends,
        described_params,
        dumps,
        pipeline_schema,
        schema_files,
        stale_files,
    )

    catalog = Catalog.load()
    warn_broken_plugins(Listing.from_catalog(catalog))
    if unit is not None:
        return _one_unit(catalog, unit, output, check)
    params, left_out = described_params(catalog)
    for sentence in left_out + described_backends(catalog)[1]:
        warn(sentence)
    if check:
        directory = output or DEFAULT_DIR
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory of schemas")
        stale = stale_files(directory, catalog, params)
        if stale:
            for relative in stale:
                click.echo(f"stale: {directory / relative}", err=True)
            click.echo(
                f"{len(stale)} schema file(s) in {directory} do not match the installed units; "
                f"run `pipeline schema --output {directory}`",
                err=True,
            )
            return 1
        click.echo(f"{directory}: schemas are current ({len(params)} units)")
        return 0
    if output is None or output.suffix == ".json":
        return _write_one(dumps(pipeline_schema(catalog, params)), output)
    _check_directory(output)
    files = schema_files(catalog, params)
    written = 0
    for relative, content in files.items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            write_file(path, content)
            written += 1
    # what is left over: units no longer installed, or no longer described
    for relative in stale_files(output, catalog, params):
        (output / relative).unlink()
        click.echo(f"removed {output / relative}", err=True)
    click.echo(f"{output}: {len(files)} schema files ({written} changed)", err=True)
    return 0


def _one_unit(catalog: Catalog, name: str, output: Path | None, check: bool) -> int:
    """`--unit NAME`: its entry's schema, printed or written to a .json file; a unit whose
    params have no schema is an error (PluginError, one sentence)."""
    from asapo_pipelines.schema import dumps, unit_schema

    if check:
        raise UsageError("--check compares a whole schema directory; leave out --unit")
    if output is not None and output.suffix != ".json":
        raise UsageError("with --unit, --output must be a .json file")
    return _write_one(dumps(unit_schema(catalog.get(name))), output)


def _write_one(text: str, output: Path | None) -> int:
    """One schema printed, or written to the .json file `output`."""
    from asapo_pipelines.cli.output import write_file

    if output is None:
        click.echo(text, nl=False)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    write_file(output, text)
    click.echo(f"wrote {output}", err=True)
    return 0


def _check_directory(output: Path) -> None:
    """An --output not ending in .json is taken as a directory: say so when it is a file
    (/dev/full, a schema named without .json) instead of mkdir's bare "File exists"."""
    if output.exists() and not output.is_dir():
        raise UsageError(
            f"--output {output} is not a directory, and an --output not ending in .json is "
            "taken as the directory to write pipeline.schema.json and units/ into; give a .json "
            "file name or a directory"
        )
