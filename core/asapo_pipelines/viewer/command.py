"""`pipeline view`: serve the live viewer of a running pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from asapo_pipelines.cli.options import PipelineFile, checked_file, find_file


@click.command("view")
@click.argument("file", required=False, type=PipelineFile(path_type=Path))
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
@click.option(
    "--bind",
    "host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; loopback unless --allow-remote.",
)
@click.option(
    "--allow-remote", is_flag=True, help="Allow a non-loopback --bind (the page has no login)."
)
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.1, 60),
    help="Seconds between reads of the transport.",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory of the local executor (holding state.json); found by itself when the "
    "run is beside the pipeline file or its embedded store.",
)
def view(
    file: Path | None,
    port: int,
    host: str,
    allow_remote: bool,
    interval: float,
    run_dir: Path | None,
) -> None:
    """Serve a live web page of a running pipeline: graph, rates, streams, plots, errors.

    It reads the pipeline's transport (embedded store or ASAP::O) and the status its workers
    publish. It listens on loopback only: on a cluster, run it on a node that reaches the
    transport and open it from your computer through an SSH tunnel:

    \b
        ssh -L 8765:localhost:8765 NODE    then open http://localhost:8765/
    """
    from asapo_pipelines.viewer.model import load_view
    from asapo_pipelines.viewer.server import check_bind, serve

    check_bind(host, allow_remote)  # before loading anything: a refused bind is one sentence
    # a missing FILE is the sentence and exit code 2 of every other command
    pipeline_view = load_view(checked_file(file) if file else find_file())

    def ready(url: str) -> None:
        click.echo(f"viewer of pipeline {pipeline_view.name} at {url}  (Ctrl+C stops it)", err=True)

    serve(
        pipeline_view,
        host=host,
        port=port,
        allow_remote=allow_remote,
        poll_interval=interval,
        run_dir=run_dir,
        ready=ready,
    )
