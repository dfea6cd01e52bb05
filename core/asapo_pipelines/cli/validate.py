"""`pipeline validate`: every problem of one or more pipeline files, each at its line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from asapo_pipelines.cli.output import warn_broken_plugins


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one `FILE:LINE:COL: severity CODE message` line per problem; json: for tools.",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option("--quiet", "-q", is_flag=True, help="Print problems only, no summary line.")
@click.pass_context
def validate(
    ctx: click.Context, files: tuple[Path, ...], fmt: str, strict: bool, quiet: bool
) -> int:
    """Check pipeline files: YAML, shape, units and their params, the graph, deploy settings.

    Exit 0 when every file is valid (warnings allowed), 1 when a file is invalid, 2 when
    validation could not run (unreadable file, no unit catalog). The problem codes are listed in
    docs/pipeline-files.md.
    """
    from asapo_pipelines.pipeline.problems import Problem, Report
    from asapo_pipelines.pipeline.validate import validate_file

    reports: list[Report]
    try:
        from asapo_pipelines.catalog import Catalog

        catalog = Catalog.load()
    except Exception as exc:  # strict mode or a broken environment: we cannot judge any file
        from asapo_pipelines.plugin_manager import describe_exception

        reason = f"the unit catalog could not be loaded: {describe_exception(exc)}"
        reports = [Report(str(f), [Problem(str(f), 1, 1, "error", "P900", reason)]) for f in files]
    else:
        if fmt == "text":
            warn_broken_plugins(catalog)
        reports = [validate_file(f, catalog) for f in files]

    def code_of(report: Report) -> int:
        code = report.exit_code
        if code == 0 and strict and report.warnings:
            return 1
        return code

    exit_code = max(code_of(r) for r in reports)
    if fmt == "json":
        data = {
            "valid": exit_code == 0,
            "exit_code": exit_code,
            "files": [r.to_dict() for r in reports],
        }
        click.echo(json.dumps(data, indent=2))
    else:
        for report in reports:
            text = report.text()
            if text:
                click.echo(text, nl=False)
            if not quiet:
                click.echo(report.summary(), err=True)
    return exit_code
