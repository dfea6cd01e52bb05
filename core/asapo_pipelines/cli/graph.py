"""`pipeline graph`: the pipeline as Mermaid, Graphviz DOT or SVG."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("graph")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "svg"]),
    default="mermaid",
    show_default=True,
    help="svg needs Graphviz's `dot` program.",
)
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Write to this file.")
def graph(file: Path, fmt: str, output: Path | None) -> None:
    """Draw a pipeline: units as nodes, streams as edges.

    The file must be valid (see `pipeline validate`).
    """
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.cli.output import write_file
    from asapo_pipelines.graph import render
    from asapo_pipelines.pipeline.validate import load_pipeline

    catalog = Catalog.load()
    pipeline = load_pipeline(file, catalog)
    text = render(pipeline, fmt, catalog)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_file(output, text)
        click.echo(f"wrote {output}", err=True)
