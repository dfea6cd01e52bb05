"""`pipeline validate`: every problem of one or more pipeline files, each at its line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from asapo_pipelines.cli.output import warn_broken_plugins, warn_plugin_list_typos

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.problems import Report


def _validate_one(path: Path, catalog: Catalog) -> Report:
    """A file, or standard input when the path is `-` (for editors and pre-commit hooks)."""
    from asapo_pipelines.pipeline.validate import validate_file

    if str(path) == "-":
        return _validate_stdin(catalog)
    # runtimes: the workers of `pipeline run` import them from this environment (P207)
    return validate_file(path, catalog, runtimes=True)


def _validate_stdin(catalog: Catalog) -> Report:
    """Standard input, read and decoded like a file: as bytes (the same UTF-8 check, not the
    locale's encoding) and at most the size limit, so `yes | pipeline validate -` ends."""
    from asapo_pipelines.pipeline.loader import LoadFailed, decode, read_limited
    from asapo_pipelines.pipeline.problems import Report
    from asapo_pipelines.pipeline.validate import validate_text

    name = "<stdin>"
    try:
        text = decode(read_limited(sys.stdin.buffer, name), name)
    except LoadFailed as exc:
        return Report(name, list(exc.problems))
    return validate_text(text, catalog, name, runtimes=True)


def _files_here() -> tuple[Path, ...]:
    """The pipeline files of the current directory, for `pipeline validate` without FILES as
    `pipeline run` takes the one there: a newcomer types both the same way."""
    from asapo_pipelines.cli.options import files_here

    # relative, as the user would have typed them: the problems are located by these names
    return tuple(Path(p.name) for p in files_here("the pipeline files to check"))


@click.command("validate", short_help="Check pipeline files; every problem at its line.")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one `FILE:LINE:COL: severity CODE message` line per problem; json: for tools.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option(
    "--ignore",
    "ignore",
    multiple=True,
    metavar="CODE",
    help="Leave out the warnings with this code (repeatable), also for --strict: `--strict "
    "--ignore P208` where a folder exists only on the cluster's nodes.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print problems only, no summary line.")
@click.option(
    "--online",
    is_flag=True,
    help="Also ask the live services a valid file names (e.g. whether a queue server allows "
    "its plans).",
)
@click.pass_context
def validate(
    ctx: click.Context,
    files: tuple[Path, ...],
    fmt: str,
    as_json: bool,
    strict: bool,
    ignore: tuple[str, ...],
    quiet: bool,
    online: bool,
) -> int:
    """Check pipeline files: YAML, shape, units and their params, the graph, deploy settings.

    Each unit's, the transport's and the executors' runtime modules must be installed here
    (P207), and the transport's client libraries (P109; P110, a warning, when `deploy:` names
    a cluster); they are found, never imported.

    Without FILES, every *.pipeline.yaml of the current directory is checked (`pipeline run`
    and the other commands take the one there). FILES may be `-` to read one file from
    standard input. With --online, a file valid offline is also checked against the services
    it names (P501: refused, P502: could not ask). With --ignore CODE, the warnings with that
    code are left out, counted in one line (`1 problem ignored (P208)`).

    Exit 0 when every file is valid (warnings allowed), 1 when a file is invalid, 2 when
    validation could not run (unreadable file, no unit catalog). The problem codes are listed in
    docs/pipeline-files.md.
    """
    from asapo_pipelines.pipeline.problems import Problem, Report, ignorable, ignored_line

    codes = ignorable(ignore)  # a typo refused before any file is read
    if as_json:
        fmt = "json"
    if not files:
        files = _files_here()
    reports: list[Report]
    try:
        from asapo_pipelines.catalog import Catalog
        from asapo_pipelines.listing import Listing

        catalog = Catalog.load()
    except Exception as exc:  # strict mode or a broken environment: we cannot judge any file
        from asapo_pipelines.plugin_manager import describe_exception

        reason = f"the unit catalog could not be loaded: {describe_exception(exc)}"
        reports = [Report(str(f), [Problem(str(f), 1, 1, "error", "P900", reason)]) for f in files]
    else:
        if fmt == "text":
            warn_broken_plugins(Listing.from_catalog(catalog))
            # a typo in the plugin list: its units would be said unknown (P201) without why
            warn_plugin_list_typos()
        reports = [_validate_one(f, catalog) for f in files]
        if online:
            from asapo_pipelines.pipeline.online import check_online

            for path, report in zip(files, reports, strict=True):
                if report.ok and str(path) != "-":
                    report.problems.extend(check_online(path, catalog))

    ignored = [p for report in reports for p in report.leave_out(codes)]

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
        if codes:
            data["ignored"] = {c: sum(p.code == c for p in ignored) for c in sorted(codes)}
        click.echo(json.dumps(data, indent=2))
    else:
        for report in reports:
            text = report.text()
            if text:
                click.echo(text, nl=False)
            if not quiet:
                click.echo(report.summary(strict=strict), err=True)
        if ignored and not quiet:
            click.echo(ignored_line(ignored), err=True)
    return exit_code
