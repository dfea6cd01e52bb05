"""From a pipeline file and a unit instance name to a running worker (`pipeline worker`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.errors import PipelinesError, UsageError

if TYPE_CHECKING:  # pragma: no cover - the constants above are read by light modules
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.transport.base import Transport
    from asapo_pipelines.transport.errors import StorageError
    from asapo_pipelines.worker.runtime import Worker

log = logging.getLogger("asapo_pipelines.worker")

#: Set by the compiled job (`launchplan.compile`, the Slurm plugin): the folder of the original
#: pipeline file, since the task runs a copy elsewhere and relative paths in params mean "next to
#: the pipeline file". Read here, by the worker; the compilers import it.
BASE_DIR_ENV = "ASAPO_PIPELINES_BASE_DIR"
#: Set by `pipeline run` and `pipeline reprocess` for their workers: the run they work in.
#: Without it a worker joins the pipeline's latest run (the first one when there is none).
RUN_ENV = "ASAPO_PIPELINES_RUN"
#: Seconds a finished worker's exit may take before it ends anyway, past threads its unit left
#: running (`exit_past_threads`)
THREAD_GRACE = 10.0


def load(pipeline_file: Path) -> tuple[Pipeline, Catalog]:
    """The pipeline (validated against the catalog of the plugins it uses) and that catalog."""
    from asapo_pipelines.pipeline import load_pipeline

    if not pipeline_file.is_file():
        raise UsageError(f"pipeline file {pipeline_file} does not exist")
    catalog = _catalog_for(pipeline_file)
    return load_pipeline(pipeline_file, catalog), catalog


def _catalog_for(pipeline_file: Path) -> Catalog:
    """Only the plugins that provide the pipeline's units, when the listing cache names them:
    a worker of a facility's environment need not import hundreds of other units' params
    models. Any doubt (no listing, a unit it does not know, a file that does not parse) loads
    the whole catalog, which then reports the problem as before and writes the listing."""
    from asapo_pipelines.catalog import ENV_STRICT, Catalog
    from asapo_pipelines.listing import remember, sources_for

    units, transports, executors = _names_used(pipeline_file)
    sources = sources_for(units, transports, executors) if units else None
    if sources is not None:
        strict = os.environ.get(ENV_STRICT, "").lower() in ("1", "true", "yes")
        catalog = Catalog.from_sources(sources, strict=strict)
        if (
            all(name in catalog for name in units)
            and all(name in catalog.transports for name in transports)
            and all(name in catalog.executors for name in executors)
        ):
            return catalog
    catalog = Catalog.load()
    remember(catalog)
    return catalog


def _names_used(pipeline_file: Path) -> tuple[set[str], set[str], set[str]]:
    """The unit types (`units.<instance>.unit`), the transport and the executors (`deploy:`)
    a pipeline file names, read leniently (nothing when it does not parse)."""
    from asapo_pipelines.pipeline.loader import read_document

    try:
        doc, _problems = read_document(pipeline_file)
        units = doc.data.get("units") or {}
        names = {str(c["unit"]) for c in units.values() if isinstance(c, dict) and "unit" in c}
        transport = doc.data.get("transport") or {}
        kinds = {str(k) for k in transport} if isinstance(transport, dict) else set()
        deploy = doc.data.get("deploy") or {}
        executors = {str(k) for k in deploy} if isinstance(deploy, dict) else set()
    except Exception:  # the validation against the whole catalog says what is wrong
        return set(), set(), set()
    return names, kinds, executors


def build_worker(
    pipeline_file: Path,
    instance: str,
    *,
    replica: int = 0,
    status_interval: float = 2.0,
    linger: float = 0.5,
    lease_seconds: float = 30.0,
) -> Worker:
    from asapo_pipelines.sdk.runner import RetryPolicy
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.worker.runtime import Worker

    pipeline, catalog = load(pipeline_file)
    pipeline_file = Path(pipeline_file).resolve()  # read again after the chdir below
    if instance not in pipeline.units:
        import difflib

        names = sorted(pipeline.units)
        near = difflib.get_close_matches(instance, names, n=1)
        hint = f"; did you mean {near[0]}?" if near else f"; its units are {', '.join(names)}"
        raise UsageError(f"pipeline {pipeline.name} has no unit {instance}{hint}")
    config = pipeline.units[instance]
    replicas = config.replicas
    if replica >= replicas:
        raise UsageError(
            f"unit {instance} has {replicas} replica(s), numbered from 0; "
            f"--replica {replica} does not exist"
        )
    descriptor = pipeline.descriptor(instance, catalog)
    _keep_log_level(descriptor.runtime)
    _import_early(descriptor.runtime)
    # relative paths in params (directories, output files) mean: next to the pipeline file; a
    # task of a Nomad job runs on a copy of it, and is told where the original is
    base = os.environ.get(BASE_DIR_ENV) or str(Path(pipeline_file).resolve().parent)
    try:
        os.chdir(base)
    except OSError as exc:
        raise UsageError(
            f"cannot work in {base} (where the pipeline file is): {exc.strerror}"
        ) from None
    # the transport's relative paths too mean: next to the original pipeline file
    pipeline.transport._base = Path(base)
    transport = open_transport(pipeline.transport.spec(), catalog)
    try:
        run_info, sources, known = _join_run(pipeline, catalog, instance, pipeline_file, transport)
    except BaseException:
        transport.close()
        raise
    # after the run's `--set` overrides are applied
    params = pipeline.params_for(instance, catalog)
    return Worker(
        transport,
        descriptor,
        params,
        pipeline=pipeline.name,
        instance=instance,
        inputs=dict(config.inputs),
        outputs=dict(config.outputs),
        replica=replica,
        retry=RetryPolicy.from_config(config.retry),
        ack_batch=config.batch.messages,
        batch_wait=config.batch.wait,
        status_interval=status_interval,
        linger=linger,
        lease_seconds=lease_seconds,
        data_sources=sources,
        run=run_info,
        configurations=known,
        upstream=upstream_of(pipeline, instance),
    )


def upstream_of(pipeline: Pipeline, instance: str) -> dict[str, int]:
    """instance -> replicas of the units whose outputs are this unit's inputs."""
    wanted = set(pipeline.units[instance].inputs.values())
    return {
        name: unit.replicas
        for name, unit in pipeline.units.items()
        if name != instance and wanted & set(unit.outputs.values())
    }


def _keep_log_level(runtime: str) -> None:
    """Give the loggers of the unit's package the worker's level, as the worker's own have: a
    library that sets the root logger's level when imported (larch sets WARNING) then does not
    silence the unit's INFO lines in `pipeline logs`."""
    import logging

    package = runtime.partition(":")[0].split(".")[0]
    # set by `pipeline worker`; a worker run in-process (tests) leaves logging as it finds it
    level = logging.getLogger(__name__.partition(".")[0]).level
    if package and level != logging.NOTSET:
        logging.getLogger(package).setLevel(level)


def _import_early(runtime: str) -> None:
    """Start importing the unit's runtime module in a thread while the worker joins its run and
    connects to the transport: `import larch.xafs` alone takes 1.6-2 s, and the scientist
    waits for it before the first scan. Failures are left to the worker's own import, which
    reports them in one sentence (Python's import lock makes it wait for this one, not redo it).
    """
    import contextlib
    import importlib
    import threading

    module = runtime.partition(":")[0]
    if not module:
        return

    def load() -> None:
        with contextlib.suppress(BaseException):  # reported by the worker's own import
            importlib.import_module(module)

    threading.Thread(target=load, name="import-runtime", daemon=True).start()


def _relative_paths(value: Any) -> list[str]:
    """String params that look like relative paths (`data/`, `results/p65.nxs`)."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _relative_paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _relative_paths(v)]
    if isinstance(value, str) and len(value) > 1 and not os.path.isabs(value):
        return [] if "://" in value else [value]
    return []


def _with_path_hint(exc: PipelinesError, worker: Worker) -> PipelinesError:
    """A start-up error naming a relative path says what it is relative to."""
    params = getattr(worker.runner, "params", None)
    try:
        values = params.model_dump() if params is not None else {}
    except Exception:  # params are a bonus here
        values = {}
    named = [
        p
        for p in _relative_paths(values)
        if re.search(rf"(?<![\w/.-]){re.escape(p.rstrip('/'))}(?![\w.-])", exc.message)
    ]
    if not named:
        return exc
    exc.message = (
        f"{exc.message} (relative paths in a pipeline file are relative to its folder, "
        f"{os.getcwd()})"
    )
    exc.args = (exc.message,)
    return exc


def _join_run(
    pipeline: Pipeline, catalog: Catalog, instance: str, pipeline_file: Path, transport: Transport
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The run this worker works in, the data sources of its streams in that run, and the
    configurations recorded for the run (by fingerprint). The run's `--set` overrides apply to
    the params, and the resulting configuration must be the one the run recorded: a file
    edited under a running pipeline is refused rather than mixed into its results."""
    from asapo_pipelines.runs import RunStore, configurations
    from asapo_pipelines.runs.overrides import apply, unflat

    store = RunStore(transport, pipeline.name)
    wanted = os.environ.get(RUN_ENV)
    if wanted:
        run = _the_run(store, wanted)
    else:
        text = Path(pipeline_file).read_text(encoding="utf-8")
        run = store.ensure(configurations(pipeline, catalog), text)
    apply(pipeline, catalog, unflat(run.overrides))
    mine = configurations(pipeline, catalog)[instance]
    recorded = run.configurations.get(instance)
    if recorded is not None and recorded.get("fingerprint") != mine["fingerprint"]:
        from asapo_pipelines.runs.fingerprint import diff_configurations

        what = diff_configurations({instance: recorded}, {instance: mine}).get(instance, [])
        raise UsageError(
            f"unit {instance} of pipeline {pipeline.name} is configured differently from what "
            f"run {run.id} recorded ({', '.join(what) or 'its configuration changed'}, after "
            "the run started); start a new run with `pipeline run --fresh` or go on with "
            "`pipeline run --resume`"
        )
    start = run.start
    info = {
        "run": run.id,
        "fingerprint": mine["fingerprint"],
        "pipeline": pipeline.name,
        "pipeline_file": start.get("file") or str(Path(pipeline_file).resolve()),
        # the file this session runs from: the start's may lie in another folder (a project
        # folder moved or copied since); a unit's sentence that names a command names this one
        "session_pipeline_file": _session_file(run) or str(Path(pipeline_file).resolve()),
        # the file of this session: a run resumed under an edited file records the edit
        "pipeline_sha256": run.file_sha256,
        "started": start.get("time"),
        # which session of the run this is: tables of its counts say they are the session's
        "session_number": len(run.sessions),
        "configuration": mine,
        # the run's `--set` overrides in force (`{"normalize.pre_edge.norm1": 150}`): a unit's
        # sentence naming a command that must repeat them (`pipeline reprocess ... --set`)
        "overrides": dict(run.overrides),
    }
    replayed = _replayed(store, run)
    if replayed is not None:
        info["replays"] = replayed
    if run.session.get("event") == "resumed":
        # when this session began; the worker's inputs may carry an earlier session's end
        info["resumed_at"] = run.session.get("time")
    info["configured_at"] = configured_at(run, instance)
    return info, stream_sources(pipeline, catalog, run.id), run.all_configurations


def _replayed(store: Any, run: Any) -> dict[str, Any] | None:
    """For a `pipeline reprocess` run, the run it replays (`UnitContext.replays`): its id and
    its start, which with the id names one run (ids start again at r1 in a new store). The
    start is the one the reprocess recorded when it began, so a prune of the replayed run
    since changes nothing; a record written before runs kept it is looked up in the store
    (None when that run's record is gone). None for any other run."""
    from asapo_pipelines.runs.store import RunsError

    start = run.start
    origin = start.get("from_run")
    if start.get("mode") != "reprocess" or not origin:
        return None
    if "from_run_started" in start:
        return {"run": str(origin), "started": start["from_run_started"]}
    try:
        started = store.get(str(origin)).started
    except RunsError:
        started = None
    return {"run": str(origin), "started": started}


def _the_run(store: Any, wanted: str) -> Any:
    """The run an executor started this worker for (`ASAPO_PIPELINES_RUN`). Its record was
    written before any worker started, so a store without it lost its data since (a Redis
    restarted without persistence, a store folder emptied): a configuration error (exit 78),
    as no restart brings the record back, said with that cause and what to do."""
    from asapo_pipelines.errors import ConfigurationError
    from asapo_pipelines.runs.store import RunsError, held_instead

    try:
        return store.get(wanted)
    except RunsError:
        now = held_instead(store.run_ids())
    raise ConfigurationError(
        f"this worker was started for run {wanted} of pipeline {store.pipeline}, but the "
        f"store no longer holds that run ({now}): its data was most likely lost or emptied "
        "after the run began (a Redis restarted without persistence, a store folder moved or "
        "deleted); nothing was run, so no input is processed again into results that hold "
        "it: restore the store's data, or start a new run that processes every input again "
        "(`pipeline run --fresh FILE`, or `pipeline deploy --fresh FILE` for a deployment)"
    ) from None


def _session_file(run: Any) -> str | None:
    """The pipeline file the run's latest session recorded (`pipeline run`, `--resume`, from
    wherever the project folder is now; a `pipeline start` records none and keeps the one
    before). Not this worker's own path, which may be a copy delivered to a task."""
    sessions = run.sessions
    file = sessions[-1].get("file") if sessions else None
    return str(file) if file else None


def configured_at(run: Any, instance: str) -> float | None:
    """When the unit's own configuration last changed in the run: the start of the latest
    session resumed with other parameters (unit or version) for it, not only for the units
    feeding it; None while it runs as the run started. A unit that keeps state tells by it a
    result it sent under earlier settings from the same result under the settings now in force
    (a merge back at a limit it had two sessions ago is news to the agent)."""
    from asapo_pipelines.runs.fingerprint import own_changes

    for event in reversed(run.events):
        if event.get("event") == "resumed" and own_changes(
            (event.get("changes") or {}).get(instance) or []
        ):
            return float(event["time"])
    return None


def stream_sources(pipeline: Pipeline, catalog: Catalog, run_id: str) -> dict[str, str]:
    """stream -> data source, for every stream of the pipeline's units in run `run_id`: the
    names a worker gives its transport (`asapo_pipelines.worker.naming`)."""
    from asapo_pipelines.worker.naming import run_sources

    streams: set[str] = set()
    for name, config in pipeline.units.items():
        streams.update(config.inputs.values())
        streams.update(config.outputs.values())
        for port in pipeline.descriptor(name, catalog).outputs:
            if port.name not in config.outputs:  # the worker's rule for unwired outputs
                streams.add(f"{name}-{port.name}".replace("_", "-"))
    external = [s for s, decl in pipeline.streams.items() if decl.external]
    return run_sources(pipeline.name, run_id, streams, external)


def _not_restarted(exc: StorageError) -> PipelinesError:
    """A damaged store file is a configuration error (exit 78): a restart meets the same
    damage, five times over a minute, before the run fails with the same sentence. A full or
    read-only disk may be mended while the worker waits to restart: that one is restarted."""
    from asapo_pipelines import storage
    from asapo_pipelines.errors import ConfigurationError

    return ConfigurationError(exc.message) if exc.kind == storage.DAMAGED else exc


def run_worker(pipeline_file: Path, instance: str, **options: Any) -> int:
    """Run a worker to its end; returns the exit code (start-up errors raise; configuration
    errors with exit code 78, so that a supervisor does not restart them)."""
    from asapo_pipelines.errors import ConfigurationError
    from asapo_pipelines.pipeline.validate import PipelineInvalid
    from asapo_pipelines.transport import StorageError, TransportConfigError

    try:
        worker = build_worker(pipeline_file, instance, **options)
    except TransportConfigError as exc:
        raise ConfigurationError(exc.message) from None
    except PipelineInvalid as exc:
        # the file a task runs (a deployed copy) does not change by itself, nor do the plugins
        # of its environment: each restart would fail the same way until its restarts ran out
        raise ConfigurationError(str(exc)) from None
    except StorageError as exc:
        raise _not_restarted(exc) from None
    worker.install_signal_handlers()
    try:
        state = worker.run()
    except ConfigurationError as exc:
        raise _with_path_hint(exc, worker) from None
    except StorageError as exc:
        raise _not_restarted(exc) from None
    finally:
        worker.transport.close()
    c = worker.counters
    # the keys a source had sent before with other content: warned of one by one, counted here
    n = c.changed_not_sent
    changed = f" ({n} sent before with other content)" if n else ""
    log.info(
        "%s %s: %d received, %d processed, %d delivered again, %d errors, %d retries, "
        "%d duplicates skipped%s",
        instance,
        state,
        c.received,
        c.processed,
        c.redelivered,
        c.errors,
        c.retries,
        c.duplicates_skipped,
        changed,
    )
    return 0


def _left_threads() -> list[Any]:
    import threading

    main = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main and t.is_alive() and not t.daemon]


def exit_past_threads(code: int, grace: float = THREAD_GRACE) -> None:
    """See that the worker ends with `code` within `grace` seconds from now, whatever its unit
    left running.

    Python waits at exit for every thread that is not a daemon: a unit that started one and
    never ended it kept its worker alive after its last message, done and acknowledged, so a
    batch run never ended (and a stopped one only at its kill timeout). The exit goes on as
    usual (a thread pool's idle threads end there, exit handlers run); a daemon watch ends
    the process with `code` only if that has not finished after `grace` seconds, naming the
    threads still running. Everything the worker took is written and acknowledged by then:
    leaving cannot lose work."""
    import threading

    def leave() -> None:
        time.sleep(grace)  # a daemon thread: gone with the process when the exit ends first
        left = _left_threads()
        if left:
            log.warning(
                "the unit left %d thread%s running (%s) %g s after it finished; the worker "
                "exits without waiting for %s: a thread a unit starts should end in its "
                "on_shutdown(), or be a daemon thread",
                len(left),
                "" if len(left) == 1 else "s",
                ", ".join(repr(t.name) for t in left),
                grace,
                "it" if len(left) == 1 else "them",
            )
        else:
            log.warning(
                "the worker had not ended %g s after it finished (an exit handler of a library "
                "it uses); it exits now",
                grace,
            )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    threading.Thread(target=leave, name="exit-watch", daemon=True).start()
