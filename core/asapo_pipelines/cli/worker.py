"""`pipeline worker`: run one unit of a pipeline (what every task of a deployed pipeline runs)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from asapo_pipelines.cli.options import PipelineFile


@click.command("worker")
@click.argument("pipeline_file", type=PipelineFile(path_type=Path))
@click.argument("unit_name")
@click.option(
    "--replica",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Which replica of the unit this is (replicas share the unit's inputs).",
)
@click.option(
    "--status-interval",
    type=click.FloatRange(min=0.05),
    default=2.0,
    show_default=True,
    help="Seconds between two publications of the worker's counters.",
)
@click.option(
    "--linger",
    type=click.FloatRange(min=0.0),
    default=0.5,
    show_default=True,
    help="Seconds to keep watching for late messages once every input is finished.",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="How long a taken message stays with this worker before it is handed to another "
    "(after a crash, unacknowledged messages come back after this). While the unit works on "
    "a message the worker renews it where the transport can (the embedded store, Redis).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def worker(
    pipeline_file: Path,
    unit_name: str,
    replica: int,
    status_interval: float,
    linger: float,
    lease_seconds: float,
    log_level: str,
) -> None:
    """Run the unit UNIT_NAME of PIPELINE_FILE until its inputs are finished.

    Reads the unit's inputs as a consumer group named after the pipeline and the unit, writes
    its outputs with provenance, sends failing messages to the error stream, and publishes its
    counters for `pipeline status`. SIGTERM or SIGINT: finish the current message and exit 0
    (at start-up, the input the unit is restoring: the next start restores them all again).
    """
    from asapo_pipelines.worker.launch import exit_past_threads, run_worker

    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s {unit_name}[{replica}] %(levelname)s %(message)s",
    )
    # the worker's own loggers and its unit's keep this level whatever the root logger's
    # becomes: importing larch sets the root's to WARNING, which emptied the XAS workers' logs
    # of every INFO line (`run_worker` does the same for the unit's package)
    logging.getLogger(__name__.partition(".")[0]).setLevel(log_level.upper())
    code = run_worker(
        pipeline_file,
        unit_name,
        replica=replica,
        status_interval=status_interval,
        linger=linger,
        lease_seconds=lease_seconds,
    )
    exit_past_threads(code)
    raise click.exceptions.Exit(code)
