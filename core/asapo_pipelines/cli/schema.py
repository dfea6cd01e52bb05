"""`pipeline schema`: JSON Schemas of pipeline files for editors, from the installed units."""

from __future__ import annotations

from pathlib import Path

import click

from asapo_pipelines.errors import UsageError

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
    """
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.cli.output import warn_broken_plugins, write_file
    from asapo_pipelines.listing import Listing
    from asapo_pipelines.schema import (
        dumps,
        pipeline_schema,
        schema_files,
        stale_files,
        unit_schema,
    )

    catalog = Catalog.load()
    warn_broken_plugins(Listing.from_catalog(catalog))
    if check:
        if unit is not None:
            raise UsageError("--check compares a whole schema directory; leave out --unit")
        directory = output or DEFAULT_DIR
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory of schemas")
        stale = stale_files(directory, catalog)
        if stale:
            for relative in stale:
                click.echo(f"stale: {directory / relative}", err=True)
            click.echo(
                f"{len(stale)} schema file(s) in {directory} do not match the installed units; "
                f"run `pipeline schema --output {directory}`",
                err=True,
            )
            return 1
        click.echo(f"{directory}: schemas are current ({len(catalog.units)} units)")
        return 0
    if unit is not None:
        text = dumps(unit_schema(catalog.get(unit)))
    else:
        text = dumps(pipeline_schema(catalog))
    if output is None:
        click.echo(text, nl=False)
        return 0
    if output.suffix == ".json":
        output.parent.mkdir(parents=True, exist_ok=True)
        write_file(output, text)
        click.echo(f"wrote {output}", err=True)
        return 0
    if unit is not None:
        raise UsageError("with --unit, --output must be a .json file")
    _check_directory(output)
    files = schema_files(catalog)
    written = 0
    for relative, content in files.items():
        path = output / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            write_file(path, content)
            written += 1
    for relative in stale_files(output, catalog):  # what is left over: units no longer installed
        (output / relative).unlink()
        click.echo(f"removed {output / relative}", err=True)
    click.echo(f"{output}: {len(files)} schema files ({written} changed)", err=True)
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
