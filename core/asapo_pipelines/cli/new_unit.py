"""`pipeline new-unit`: scaffold a plugin package with one unit, or add a unit to one."""

from __future__ import annotations

from pathlib import Path

import click

from asapo_pipelines.cli.options import json_option


@click.command("new-unit")
@click.argument("unit_name")
@click.option(
    "--kind",
    type=click.Choice(["processor", "connector", "source", "sink", "agent"]),
    default="processor",
    show_default=True,
    help="What the unit is: a processor, a connector that reads (connector or source) or "
    "writes (sink), or an agent that suggests plan changes.",
)
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
@click.option(
    "--add-to",
    "add_to",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Add the unit to this package (made by `pipeline new-unit`) instead of a new one.",
)
@json_option
def new_unit(
    unit_name: str,
    kind: str,
    directory: Path,
    distribution: str | None,
    add_to: Path | None,
    as_json: bool,
) -> None:
    """Create a plugin package for the unit UNIT_NAME (`<namespace>.<name>`), or add the unit
    to an existing package with --add-to. The namespace is the package's own: no installed
    plugin's for a new package, the package's with --add-to.

    The package holds a pyproject with the entry point, an example unit of the chosen kind,
    its tests using the asapo_pipelines pytest fixtures, and a README. Its tests pass as
    generated, from the checkout (`pytest`) and once installed.
    """
    from asapo_pipelines.scaffold import Names, add_unit, scaffold

    if add_to is not None:
        written = add_unit(unit_name, add_to, kind=kind)
        project = add_to
    else:
        project = scaffold(unit_name, directory, distribution=distribution, kind=kind)
        names = Names.of(unit_name, distribution)
        written = [
            project / names.package / "units" / f"{names.module}.py",
            project / names.package / f"{names.module}.py",
            project / "tests" / f"test_{names.module}.py",
        ]
    if as_json:
        from asapo_pipelines.cli.output import print_json

        print_json(
            {
                "project": str(project),
                "unit": unit_name,
                "kind": kind,
                "added": add_to is not None,
                "files": [str(p) for p in written],
            }
        )
        return
    click.echo(f"{'added to' if add_to is not None else 'created'} {project}")
    for path in written:
        click.echo(f"  {path.relative_to(project)}")
    # installed first: the tests need pytest, which the `test` extra brings; no `cd .` when
    # a unit was added to the package of the current directory (`--add-to .`)
    here = project.resolve() == Path.cwd().resolve()
    click.echo(f"next: {'' if here else f'cd {project} && '}pip install -e '.[test]' && pytest")
