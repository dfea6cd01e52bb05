"""`pipeline new-unit`: scaffold a plugin package with one processor unit."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("new-unit")
@click.argument("unit_name")
@click.option(
    "--directory",
    "-d",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the package's directory.",
)
@click.option(
    "--distribution",
    help="Name of the Python distribution (default: asapo-pipelines-<namespace>).",
)
def new_unit(unit_name: str, directory: Path, distribution: str | None) -> None:
    """Create a plugin package for the unit UNIT_NAME (`<namespace>.<name>`).

    The package holds a pyproject with the entry point, an example processor, its tests using
    the asapo_pipelines pytest fixtures, and a README. It installs and its tests pass as
    generated.
    """
    from asapo_pipelines.scaffold import Names, scaffold

    project = scaffold(unit_name, directory, distribution=distribution)
    names = Names.of(unit_name, distribution)
    click.echo(f"created {project}")
    click.echo(f"  unit {names.unit}: {names.package}/{names.module}.py")
    click.echo(f"next: cd {project} && pip install -e '.[test]' && pytest")
