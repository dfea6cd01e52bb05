"""From a pipeline file and a unit instance name to a running worker (`pipeline worker`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from asapo_pipelines.errors import PipelinesError, UsageError

log = logging.getLogger("asapo_pipelines.worker")


def load(pipeline_file: Path) -> tuple[Any, Any]:
    """The pipeline (validated against the installed catalog) and that catalog."""
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import load_pipeline

    if not pipeline_file.is_file():
        raise UsageError(f"pipeline file {pipeline_file} does not exist")
    catalog = Catalog.load()
    return load_pipeline(pipeline_file, catalog), catalog


def build_worker(
    pipeline_file: Path,
    instance: str,
    *,
    replica: int = 0,
    status_interval: float = 2.0,
    linger: float = 0.5,
    lease_seconds: float = 30.0,
) -> Any:
    from asapo_pipelines.sdk.runner import RetryPolicy
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.worker.runtime import Worker

    pipeline, catalog = load(pipeline_file)
    if instance not in pipeline.units:
        import difflib

        names = sorted(pipeline.units)
        near = difflib.get_close_matches(instance, names, n=1)
        hint = f"; did you mean {near[0]}?" if near else f"; its units are {', '.join(names)}"
        raise UsageError(f"pipeline {pipeline.name} has no unit {instance}{hint}")
    config = pipeline.units[instance]
    replicas = int(getattr(config, "replicas", 1) or 1)
    if replica >= replicas:
        raise UsageError(
            f"unit {instance} has {replicas} replica(s), numbered from 0; "
            f"--replica {replica} does not exist"
        )
    descriptor = pipeline.descriptor(instance, catalog)
    params = pipeline.params_for(instance, catalog)
    # relative paths in params (directories, output files) mean: next to the pipeline file, or,
    # for a task running a delivered copy of it, next to the original (the compiled job sets
    # ASAPO_PIPELINES_BASE_DIR, see docs/nomad.md)
    os.chdir(os.environ.get("ASAPO_PIPELINES_BASE_DIR") or Path(pipeline_file).resolve().parent)
    transport = open_transport(pipeline.transport.spec())
    return Worker(
        transport,
        descriptor,
        params,
        pipeline=pipeline.name,
        instance=instance,
        inputs=dict(config.inputs or {}),
        outputs=dict(config.outputs or {}),
        replica=replica,
        retry=RetryPolicy.from_config(getattr(config, "retry", None)),
        status_interval=status_interval,
        linger=linger,
        lease_seconds=lease_seconds,
    )


def run_worker(pipeline_file: Path, instance: str, **options: Any) -> int:
    """Run a worker to its end; returns the exit code (start-up errors raise)."""
    worker = build_worker(pipeline_file, instance, **options)
    worker.install_signal_handlers()
    try:
        state = worker.run()
    except PipelinesError:
        raise
    finally:
        worker.transport.close()
    c = worker.counters
    log.info(
        "%s %s: %d received, %d processed, %d errors, %d retries, %d duplicates skipped",
        instance,
        state,
        c.received,
        c.processed,
        c.errors,
        c.retries,
        c.duplicates_skipped,
    )
    return 0
