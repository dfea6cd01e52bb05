"""The local executor's own commands: `pipeline run FILE [--detach]` and `pipeline reprocess`.

FILE is a pipeline file (compiled on the fly to its Nomad job) or a compiled job (`*.json`, as
`pipeline plan --json` or the compiler writes it). Runs live under the pipeline's data directory
(`<data>/runs/<job>/`). `status`, `logs` and `stop` of a run go through the executor interface
(`pipeline_executor.LocalPipelineExecutor`), which uses the helpers below for what it shows.
They reach the command line through the core's default plugin (`default_backends.COMMANDS`,
hook `register_commands`): the CLI shell does not know them by name.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.options import PipelineFile, asked_run, data_dir_option
from asapo_pipelines.cli.output import OUTPUT_CLOSED, print_json, silence_stdout
from asapo_pipelines.errors import UsageError
from asapo_pipelines.local.sent import show
from asapo_pipelines.local.target import Target, logs_where, resolve
from asapo_pipelines.runs.lifecycle import unapplied_note
from asapo_pipelines.worker.status import status_reader

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.local.control import StartLock
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.runs import Run, RunStore


@click.command()
@click.argument("file", required=False, type=PipelineFile())
@click.option("--detach", "-d", is_flag=True, help="Run in the background; see status/logs/stop.")
@click.option(
    "--fresh", is_flag=True, help="Start a new run (the last one stays listed until pruned)."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Go on with the last run under a changed configuration (for the messages not yet "
    "processed; provenance records it).",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="UNIT.PARAM=VALUE",
    help="Override a unit parameter for this run (repeatable), e.g. normalize.autobk.rbkg=1.2.",
)
@data_dir_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final status as JSON (as `status --json` does); progress goes to stderr.",
)
@click.pass_context
def run(
    ctx: click.Context,
    file: str | None,
    detach: bool,
    fresh: bool,
    resume: bool,
    sets: tuple[str, ...],
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Run FILE's pipeline on this machine until it ends (batch) or Ctrl-C.

    The first run starts run r1; running the file again resumes it while its configuration is
    unchanged (nothing is processed twice). A changed configuration is refused, naming the
    changed units and params, until you choose --fresh or --resume.
    """
    from asapo_pipelines.local.control import start_detached, stopped_orphans_note
    from asapo_pipelines.local.errors import JobFailed

    target = resolve(file, data_dir, None, compile=True)
    assert target.payload is not None
    shown = file or target.pipeline_file
    session = None
    if target.pipeline is None and (fresh or resume or sets):
        raise UsageError("--fresh, --resume and --set need a pipeline file, not a compiled job")
    if target.pipeline is not None:
        from asapo_pipelines.local.session import apply_overrides
        from asapo_pipelines.pipeline.online import check_before_start
        from asapo_pipelines.pipeline.validate import refuse_missing_directories

        assert target.pipeline_file is not None
        overrides = apply_overrides(target, sets, str(shown))
        # the services the units name (a queue server's allowed plans), asked before anything
        # is recorded, of the pipeline as it will run (--set applied)
        check_before_start(
            *target.loaded(), Path(target.pipeline_file), str(shown), executor="local"
        )
        # a folder the units read, as it will run: its worker found it missing only after
        # the run was recorded (and every other worker started)
        refuse_missing_directories(*target.loaded(), Path(target.pipeline_file), overrides)
    start, transport = take_start(ctx, target, str(shown))
    if target.pipeline is not None:
        from asapo_pipelines.local.control import refused_while_running
        from asapo_pipelines.local.session import start_session

        job = target.payload.get("Job", target.payload)
        with refused_while_running(
            str(job.get("ID")), target.run_dir, str(shown), target.pipeline_file, data_dir
        ):
            session = start_session(
                target,
                transport,
                fresh=fresh,
                resume=resume,
                overrides=overrides,
                shown=str(shown),
            )
        if not detach:
            session.announce(err=as_json)
            _say_external(target.pipeline, err=as_json)
    if detach:
        from asapo_pipelines import interrupts

        # a Ctrl-C whose KeyboardInterrupt was lost on its way starts no supervisor that
        # outlives the command (the foreground one stops at once: `LocalExecutor.run`)
        interrupts.raise_if_lost()
        if session is not None:
            # the supervisor and its tasks inherit the run id from this environment
            os.environ[session.env_name] = session.run.id
        state = start_detached(
            target.payload,
            target.run_dir,
            pipeline_file=target.pipeline_file,
            shown=str(shown),
            stopped_orphans=session.stopped_orphans if session is not None else None,
            data_dir=data_dir,
        )
        start.release()  # its supervisor holds the run now
        # the other commands find the run directory only where they are told it is
        where = logs_where(shown, data_dir)
        # said once the supervisor started, as `deploy` says it once its submission succeeded:
        # a start that failed resumed nothing, and its error is the one thing to read
        if session is not None:
            session.announce(err=as_json)
        if target.pipeline is not None:
            # as a foreground run says it: a detached run waiting for what another program
            # writes looks, in `pipeline status`, as hung as a foreground one looked
            _say_external(target.pipeline, err=as_json, stop=f"`pipeline stop {where}`")
        # the supervisor stopped the tasks of a lost run first: said as a foreground run says it
        told = stopped_orphans_note(state)
        if told:
            click.echo(told, err=as_json)
        if as_json:
            print_json(state)
            return
        click.echo(
            f"job {state['job']} runs in the background (supervisor pid {state['pid']}, "
            f"run directory {target.run_dir}); follow it with `pipeline status {where}`, "
            f"`pipeline logs {where} UNIT`, and stop it with `pipeline stop {where}`"
        )
        return
    environ = dict(os.environ)
    if session is not None:
        environ[session.env_name] = session.run.id
    where = logs_where(shown, data_dir)
    label = session.label if session is not None else None
    result, counters = execute(
        target,
        target.payload,
        environ,
        as_json=as_json,
        where=where,
        session=label,
        on_started=start.release,
        stopped_orphans=session.stopped_orphans if session is not None else None,
    )
    if session is not None:
        session.finish(result, counters, target.payload)
        unapplied = unapplied_note(
            session.run, session.label, counters, where or "FILE", lambda: _runs_of(session.store)
        )
        if unapplied:
            click.echo(unapplied, err=as_json)
    if as_json:
        print_json(status_json(dict(result.state), counters or None))
    if result.status == "failed":
        raise JobFailed(result.message)
    ctx.exit(told_exit(result, counters, as_json=as_json, sources=_sources_of(target)))


def _say_external(pipeline: Pipeline, *, err: bool, stop: str = "Ctrl-C") -> None:
    """The external streams the units read: the run waits for what another program writes
    there until stopped, and a first run of `pipeline new -u core.identity ...` sat silent,
    looking hung, when nothing wrote them. `stop`: how this run is stopped (a detached one
    with `pipeline stop`)."""
    read = {s for config in pipeline.units.values() for s in config.inputs.values()}
    external = sorted(n for n, d in pipeline.streams.items() if d.external and n in read)
    if external:
        names = ", ".join(external)
        click.echo(
            f"waiting for messages on external stream{'s' if len(external) > 1 else ''} "
            f"{names}, which another program writes (see docs/pipeline-files.md, "
            f"`streams`); the run goes on until stopped ({stop})",
            err=err,
        )


def _runs_of(store: Any) -> list[Any]:
    """The pipeline's runs, for the end-of-session line to name a reprocess made already;
    none when the store cannot be read now (the line then asks for one, as before)."""
    try:
        return list(store.runs())
    except Exception:
        return []


def take_start(ctx: click.Context, target: Target, shown: str) -> tuple[StartLock, Any]:
    """Hold the start of the target's job (`control.StartLock`) until its supervisor holds the
    run; refused in one sentence, having recorded nothing, while another start holds it. The
    hold ends at the latest when the command ends: after a failed start has recorded its end
    (`session.end_if_left`, registered later, runs first), so that the next start finds the
    run's record as this one left it.

    Also returns the pipeline's transport (None for a compiled job), opened before the start
    lock makes the run directory (under an embedded store): a store that cannot be opened,
    such as a `path` naming a file, is refused in its own sentence, as every other command
    says it, not as "the run directory ... failed: Not a directory". The start records its
    session through it (`session.start_session`): the store is opened once per start. It is
    closed when the command ends, at the latest."""
    from asapo_pipelines.local.control import StartLock

    assert target.payload is not None
    transport = _open_store(target)
    if transport is not None:
        ctx.call_on_close(transport.close)
    job = target.payload.get("Job", target.payload)
    start = StartLock(
        str(job.get("ID")), target.run_dir, shown, target.pipeline_file, target.data_dir
    )
    ctx.call_on_close(start.release)
    return start, transport


def _open_store(target: Target) -> Any:
    """The pipeline's transport, through the catalog: no backend is imported here by name."""
    if target.pipeline is None:
        return None
    from asapo_pipelines.transport import open_transport

    pipeline, catalog = target.loaded()
    return open_transport(pipeline.transport.spec(), catalog)


def _sources_of(target: Any) -> set[str]:
    """The source instances of the target's pipeline (none known for a compiled job)."""
    from asapo_pipelines.runs.lifecycle import source_streams

    if target.pipeline is None:
        return set()
    return set(source_streams(*target.loaded()))


def execute(
    target: Target,
    payload: dict[str, Any],
    environ: dict[str, str],
    *,
    as_json: bool = False,
    where: str | None = None,
    session: str | None = None,
    on_started: Callable[[], None] | None = None,
    stopped_orphans: Mapping[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Run a compiled job under the live table, with its workers' warnings and errors below
    it (`where`: what `pipeline logs` needs to find the run, for the rest); prints the final
    table and the summaries (with `as_json`, the table goes to stderr and the caller prints
    the JSON document). With `session` (`Session.label`), the counters and summaries are
    that session's only: not an earlier session's or another run's last records.
    `on_started` is called once the run's first state is written, `stopped_orphans` said
    among its events (`ExecOptions`)."""
    from asapo_pipelines.cli.output import console
    from asapo_pipelines.local.executor import ExecOptions, LocalExecutor
    from asapo_pipelines.local.live import LiveView

    out = console(stderr=as_json)  # with --json, stdout holds the JSON document only
    if not out.is_terminal:
        out.width = max(out.width, 120)  # a log file or a pipe: room for the whole table
    reader = status_reader(target.pipeline, payload, session) if target.pipeline else None
    logs = where or logs_where(target.pipeline_file, None)
    executors: list[LocalExecutor] = []
    with LiveView(out, reader, logs_where=logs, on_closed=lambda: stop_all(executors)) as view:
        options = ExecOptions(
            environ=environ,
            on_event=view.event,
            on_update=view.update,
            on_log=view.log,
            pipeline_file=target.pipeline_file,
            data_dir=target.data_dir,
            on_started=on_started,
            stopped_orphans=stopped_orphans,
        )
        executors.append(LocalExecutor(payload, target.run_dir, options))
        result = executors[0].run()
    counters = view.read_counters(force=True)
    try:
        print_outcome(result, counters, target.pipeline_file, out, as_json=as_json)
    except BrokenPipeError:
        # the run has ended: its caller records how, whoever stopped reading
        silence_stdout()
    return result, dict(counters or {})


def stop_all(executors: list[Any]) -> None:
    """Stop the run as SIGTERM does, once its output is closed: without a reader a run in the
    foreground has no one to tell how it went, and `pipeline run --detach` is the way to run
    without one."""
    for executor in executors:
        executor.request_stop(OUTPUT_CLOSED)


def print_outcome(
    result: Any, counters: Any, pipeline_file: str | None, out: Any, *, as_json: bool
) -> None:
    from asapo_pipelines.local.live import status_table

    out.print(status_table(result.state, counters))
    if not as_json:
        from asapo_pipelines.worker.status import summary_lines

        for line in summary_lines((counters or {}).values()):
            click.echo(line)
        told = errors_told((counters or {}).values(), pipeline_file)
        if told:
            click.echo(told)


def errors_told(records: Any, pipeline_file: str | None) -> str:
    """One line, after the summaries, when messages went to the error stream: a run whose
    every task exited 0 may still have turned scans away (a malformed file, a plan the queue
    server refused), and the table's errors column is easy to miss."""
    per_unit: dict[str, int] = {}
    for record in records:
        if isinstance(record, dict) and int(record.get("errors") or 0) > 0:
            unit = str(record.get("instance", "?"))
            per_unit[unit] = per_unit.get(unit, 0) + int(record["errors"])
    if not per_unit:
        return ""
    total = sum(per_unit.values())
    where = shlex.quote(pipeline_file) if pipeline_file else "FILE"
    units = ", ".join(f"{unit} {n}" for unit, n in per_unit.items())
    return (
        f"{total} message{'' if total == 1 else 's'} went to the error stream ({units}): "
        f"read {'it' if total == 1 else 'them'} with `pipeline tail {where} errors`"
    )


#: `pipeline run`'s exit code for a run that completed while a unit processed none of its
#: inputs, every one going to the error stream (sysexits' EX_DATAERR: the input was wrong)
NOTHING_PROCESSED = 65


def turned_away(records: Any, sources: Collection[str]) -> str:
    """The units that processed none of their inputs, every one going to the error stream,
    as a clause ("" when there is none): a batch script must tell such a run (a folder of
    files that cannot be read, a column mapping that fits no file) from a good one, while a
    run that turned only some inputs away did its work (`errors_told` says how many). A
    source's inputs are the items it reported (`sources`: their instances), another unit's
    the messages it received: its errors may be of no input (a state it could not restore)."""
    per_unit: dict[str, list[int]] = {}
    for record in records:
        if isinstance(record, dict):
            counts = per_unit.setdefault(str(record.get("instance", "?")), [0, 0, 0, 0])
            counts[0] += int(record.get("processed") or 0)
            counts[1] += int(record.get("errors") or 0)
            counts[2] += int(record.get("received") or 0)
            # with the items a resumed source knew as sent without reading them again
            # (`Source.already_sent`)
            counts[3] += int(record.get("duplicates_skipped") or 0)
    said = []
    for unit, (done, errors, received, skipped) in per_unit.items():
        n = errors if unit in sources else received
        if unit in sources and skipped:
            # a resumed source that sent its good items in an earlier session of the run (it
            # skipped them now) and only new bad ones since: the run has its outputs, as the
            # same files run --fresh exit 0 (an outside tester's resumed run exited 65 for 2
            # unreadable files beside 3 good ones); `errors_told` still says the 2
            continue
        if not done and errors and n:
            said.append(f"{unit} processed none of its {'one input' if n == 1 else f'{n} inputs'}")
    return "; ".join(said)


def told_exit(result: Any, counters: Any, *, as_json: bool, sources: Collection[str] = ()) -> int:
    """Say how a run that did not fail ended and return its exit code (`RunResult.exit_code`,
    or `NOTHING_PROCESSED` when a unit turned every input away)."""
    records = (counters or {}).values()
    away = turned_away(records, sources) if result.status == "complete" else ""
    if away:
        click.echo(f"{result.message}, but {away}: all went to the error stream", err=True)
        return NOTHING_PROCESSED
    if not as_json:
        click.echo(result.message)
    return int(result.exit_code)


def store_view(
    run_dir: Path, state: Mapping[str, Any], pipeline: Pipeline | None, catalog: Catalog
) -> tuple[bool, dict[str, Any] | None, str, tuple[Run | None] | None]:
    """What the pipeline's store says of a local run, through one opening of its transport (a
    remote one may take its connect timeout): whether the state's run was pruned (`pipeline
    prune FILE --run RUN` drops its record, not the run directory, whose state would show a
    job no store holds any more), what each replica published last (counters, the unit's
    summary), the run named (`cli.tail.run_named`: a reprocess, or one of several runs), and
    the record `status` says more of under its table (in a tuple, None when not read): the
    current run while the run goes on (FILE edited since), else the latest (its units'
    unapplied settings). Nothing is known when the store cannot be reached: (False, None, "",
    None)."""
    if pipeline is None:
        return False, None, "", None
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    # the run's own name: a run goes on under the name it started with, `pipeline:` renamed
    name = str(state.get("job") or pipeline.name)
    try:  # read alone: a store archived on a read-only file system still shows its run
        with open_transport(pipeline.transport.spec(), catalog, read_only=True) as transport:
            named = _named(transport, name, state.get("run"))
            if named is None:
                return True, None, "", None
            published = _published(transport, name, run_dir, state)
            return False, published, named, _record(RunStore(transport, name), state)
    except Exception:  # the state file is then the status, as before
        return False, None, "", None


def _record(store: RunStore, state: Mapping[str, Any]) -> tuple[Run | None] | None:
    """`store_view`'s record: the current run while the state says it runs, else the latest;
    None when it cannot be read (`status` then reads it on its own, and says why)."""
    try:
        return (store.current() if state.get("status") == "running" else store.latest(),)
    except Exception:
        return None


def _named(transport: Any, pipeline: str, run: Any) -> str | None:
    """The state's run named (`cli.tail.run_named`), None when it was pruned. The run
    directory holds the run its supervisor ran last: after `pipeline reprocess`, the replay's,
    whose short batch job would be taken for the night's run of hours."""
    if not run:
        return ""  # a state file written before runs were recorded there
    from asapo_pipelines.cli.tail import run_named
    from asapo_pipelines.runs import RunStore

    store = RunStore(transport, pipeline)
    ids = store.run_ids()
    return run_named(store.get(str(run)), ids) if str(run) in ids else None


def _published(
    transport: Any, pipeline: str, run_dir: Path, state: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Each replica's last status record of the session the run directory's supervisor ran
    (`_supervised_session`): a replica that did not publish in it has none, not the record an
    earlier session or another run (a reprocess) left last on the pipeline's status streams."""
    from asapo_pipelines.local.layout import JOB_FILE
    from asapo_pipelines.worker.status import latest_status, status_consumer

    try:  # the job that runs, as the supervisor wrote it
        running_job = json.loads((run_dir / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    try:
        session = _supervised_session(transport, pipeline, state)
        with status_consumer(transport, pipeline) as consumer:
            return latest_status(consumer, running_job, session)
    except Exception:  # counters are a bonus; the state file is the status
        return None


def _supervised_session(transport: Any, pipeline: str, state: Mapping[str, Any]) -> str | None:
    """The session (`Session.label`) of the state's run its supervisor ran: the run's last
    session begun when it started. None for a job run outside a run."""
    if not state.get("run"):
        return None
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.runs.lifecycle import current_session

    run = RunStore(transport, pipeline).get(str(state["run"]))
    started = state.get("started")
    return current_session(run, float(started) if isinstance(started, int | float) else None)


def status_json(state: dict[str, Any], counters: dict[str, Any] | None) -> dict[str, Any]:
    """The run's state with, for each unit replica, its counters and the unit's summary (the
    table and summary lines of the text output, for tools)."""
    from asapo_pipelines.worker.status import summary_lines

    published = counters or {}
    units = []
    for record in state.get("units") or []:
        name = f"{record.get('group')}[{record.get('index', 0)}]"
        found = published.get(name) or published.get(str(record.get("name"))) or {}
        units.append(
            {**record, "counters": _counter_fields(found), "summary": found.get("summary")}
        )
    return {
        **state,
        "units": units,
        "summaries": {k: v.get("summary") for k, v in published.items() if v.get("summary")},
        "summary_lines": summary_lines(published.values()),
    }


def _counter_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("summary",)}


#: The `status` of `status --json` when no local run is recorded (never run, or pruned).
NOT_STARTED = "not started"


def no_run_json(
    job: str | None, run_dir: Path | None, pipeline_file: str | None, message: str
) -> dict[str, Any]:
    """`status --json` of a pipeline no local run is recorded for: the keys of `status_json`
    of a run's state (`local.executor` writes it), null where only a run has a value, with no
    units and no summaries, so a tool reads one document whether or not a run exists."""
    from asapo_pipelines.local.state import REPLAY

    unknown = ("type", "pid", "detached", "run", REPLAY, "stopped_orphans", "started", "updated")
    state: dict[str, Any] = {
        **dict.fromkeys(unknown),
        "job": job,
        "name": job,
        "status": NOT_STARTED,
        "message": message,
        "pipeline_file": pipeline_file,
        "run_dir": None if run_dir is None else str(run_dir),
        "finished": None,
        "units": [],
    }
    return status_json(state, None)


def copy_logs(readers: list[tuple[Any, Any]], follow: bool) -> None:
    """Copy each log to its output; when following two, both at once (a thread each)."""
    import threading

    lock = threading.Lock()

    def copy(chunks: Any, out: Any) -> None:
        for chunk in chunks:
            with lock:
                out.write(chunk)
                out.flush()

    if not follow or len(readers) == 1:
        for chunks, out in readers:
            copy(chunks, out)
        return
    threads = [threading.Thread(target=copy, args=r, daemon=True) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # a timeout keeps Ctrl-C working


# -- pipeline reprocess ----------------------------------------------------------------------
@click.command("reprocess")
@click.argument("file", type=PipelineFile())
@click.option("--from", "from_run", required=True, metavar="RUN", help="The run to replay (r3).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="UNIT.PARAM=VALUE",
    help="Override a unit parameter for the new run (repeatable).",
)
@data_dir_option
@click.pass_context
def reprocess(
    ctx: click.Context, file: str, from_run: str, sets: tuple[str, ...], data_dir: str | None
) -> None:
    """Replay RUN's source messages, as stored, through FILE's current configuration as a new
    run (no file or detector is read again), then print old against new: what each unit sent,
    message by message, and what its summary declares."""
    from asapo_pipelines.local.control import refused_while_running
    from asapo_pipelines.local.errors import JobFailed
    from asapo_pipelines.local.sent import compare_sent
    from asapo_pipelines.local.session import Session, apply_overrides
    from asapo_pipelines.local.state import LEFT_OUT_META, REPLAYS_META
    from asapo_pipelines.pipeline.online import check_before_start
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.runs.lifecycle import compare, source_streams
    from asapo_pipelines.worker.launch import RUN_ENV
    from asapo_pipelines.worker.naming import JOB_TYPE_ENV

    target = resolve(file, data_dir, None, compile=True)
    assert target.payload is not None
    assert target.pipeline_file is not None
    pipeline, catalog = target.loaded()
    overrides = apply_overrides(target, sets, file)
    # the replay's suggestions go to the same queue server
    check_before_start(pipeline, catalog, Path(target.pipeline_file), file, executor="local")
    # a `pipeline run` starting at the same moment would pass the checks below as well
    start, transport = take_start(ctx, target, file)
    store = RunStore(transport, pipeline.name)
    job = str(target.payload.get("Job", target.payload).get("ID"))
    try:
        # refused as `pipeline run` is while a supervisor runs the job here (another
        # reprocess): the lock refused it only once the replay was recorded, its run listed
        # `failed`, and "run r15 replays ..." said first
        old, streams = _check_replay(store, target, from_run)
        with refused_while_running(job, target.run_dir, file, target.pipeline_file, data_dir):
            new, copied = _begin_replay(store, target, old, streams, overrides)
    except BaseException:
        transport.close()
        raise
    click.echo(f"run {new.id} replays {copied} source messages of run {old.id}")
    sources = set(source_streams(pipeline, catalog))
    payload = json.loads(json.dumps(target.payload))
    payload["Job"]["TaskGroups"] = [
        g for g in payload["Job"]["TaskGroups"] if g["Name"] not in sources
    ]
    # a replay is finite: its source streams are finished and no source runs to add more, so
    # its workers end once drained, also for a pipeline that watches a folder (a service)
    payload["Job"]["Type"] = "batch"
    # kept in the run's state: `pipeline logs FILE SOURCE` then says why a source has no log
    payload["Job"]["Meta"] = {
        **(payload["Job"].get("Meta") or {}),
        REPLAYS_META: old.id,
        LEFT_OUT_META: ",".join(sorted(sources)),
    }
    for group in payload["Job"]["TaskGroups"]:
        for task in group.get("Tasks") or []:
            task["Env"] = {**(task.get("Env") or {}), JOB_TYPE_ENV: "batch"}
    environ = {**os.environ, RUN_ENV: new.id}
    session = Session(store, transport, new, "started", RUN_ENV)
    try:
        where = logs_where(file, data_dir)
        result, counters = execute(
            target, payload, environ, where=where, session=session.label, on_started=start.release
        )
    except BaseException as exc:
        # the replay never ran to its end (refused, interrupted): its run ends with why
        interrupted = isinstance(exc, KeyboardInterrupt)
        session.abort("stopped" if interrupted else "failed", str(exc) or type(exc).__name__)
        raise
    session.finish(result, counters, payload)
    if result.status == "stopped":
        # part of the old run's messages processed: every difference would be the stop's
        click.echo(stopped_replay(old.id, new.id, result.message, where, sets))
        ctx.exit(result.exit_code)
    kept = {k: v for k, v in old.summaries.items() if k.partition("[")[0] not in sources}
    sent = compare_sent(pipeline, catalog, old.id, new.id, sources)
    click.echo(configuration_line(old, new))
    print_comparison(old.id, new.id, compare(kept, new.summaries), sent)
    if result.status == "failed":
        raise JobFailed(result.message)
    ctx.exit(told_exit(result, counters, as_json=False, sources=sources))


def stopped_replay(
    old_id: str, new_id: str, why: str, where: str | None, sets: Collection[str]
) -> str:
    """What a replay stopped before its end (`pipeline stop`, Ctrl-C) says instead of old
    against new: its results are of part of the old run's messages, and a comparison of
    them read as what the change did (`action: stop -> -   (changed)`). Nothing shows the
    comparison later; a replay run to its end does."""
    again = f"pipeline reprocess {where or 'FILE'} --from {old_id}" + "".join(
        f" --set {shlex.quote(s)}" for s in sets
    )
    return (
        f"{why}: reprocess {new_id} of run {old_id} was stopped before it finished, so no "
        f"comparison ({new_id} holds the results of only part of {old_id}'s messages); "
        f"`{again}` replays it again to its end"
    )


def _check_replay(store: RunStore, target: Target, from_run: str) -> tuple[Run, list[str]]:
    """The run to replay and its data sources to copy, or a sentence, before anything is
    recorded: an unknown run, pruned source messages, a run going on."""
    from asapo_pipelines.runs.lifecycle import check_replayable, refuse_while_alive

    assert target.pipeline_file is not None
    owner = store.owner()
    if owner is not None:
        store.claim(target.pipeline_file)  # refuses another file's namespace
    old = asked_run(store, from_run)  # an unknown run is a name given wrong, as in `tail`
    # a run going on, here or in another data directory, writes the same sinks (a NeXus
    # file) and its sources are not finished: a replay beside it would be recorded and
    # then refused by the supervisor lock, its run left `running` for ever
    for run in store.runs():
        refuse_while_alive(store, run, Path(target.pipeline_file), None)
    return old, check_replayable(store.transport, *target.loaded(), old)


def _begin_replay(
    store: RunStore, target: Target, old: Run, streams: list[str], overrides: Any
) -> tuple[Run, int]:
    """Record the replay of `old` as a new run and copy its source messages (`streams`) into
    it: the new run and how many messages were copied."""
    from asapo_pipelines.runs import configurations
    from asapo_pipelines.runs.lifecycle import replay
    from asapo_pipelines.runs.overrides import flat

    assert target.pipeline_file is not None
    pipeline, catalog = target.loaded()
    store.claim(target.pipeline_file)
    new = store.begin(
        pipeline_file=target.pipeline_file,
        text=Path(target.pipeline_file).read_text(encoding="utf-8"),
        configurations=configurations(pipeline, catalog),
        overrides=flat(overrides),
        mode="reprocess",
        from_run=old.id,
        # its run directory, as `pipeline run` records it: a start from another data
        # directory is refused while the replay goes on (`refuse_while_alive`)
        details={"run_dir": str(Path(target.run_dir).resolve())},
    )
    try:
        copied = replay(store.transport, pipeline.name, streams, old, new)
    except BaseException as exc:
        # the run is recorded: it ends with why, or it stays `running` for ever, which
        # `stop` finds nothing to stop of and `prune` refuses as running
        stopped = isinstance(exc, KeyboardInterrupt)
        why = str(exc) or type(exc).__name__
        store.end(new, "stopped" if stopped else "failed", f"replay of {old.id}: {why}")
        raise
    return new, copied


#: The summary keys that count what a unit stored, not what it found (docs/unit-authors.md):
#: a replay stores again only what its output does not hold yet, so these differ between the
#: old run and the new one whatever the science did.
WRITE_COUNT_SUFFIXES = ("_written", "_in_file")
WRITE_COUNT_KEYS = frozenset({"duplicates_skipped"})


def is_write_count(what: str) -> bool:
    """Whether a comparison row (`compare`'s dotted path) is a write count by its key."""
    key = what.rpartition(".")[2]
    return key in WRITE_COUNT_KEYS or key.endswith(WRITE_COUNT_SUFFIXES)


def configuration_line(old: Any, new: Any) -> str:
    """What the replay changed in the configuration, before the differences it made: the
    replay runs the file as it is now with its `--set`, not the old run's last session's
    `--set` overrides, and a difference read without this line is taken for the effect of the
    one change the user typed. Params only: a unit whose inputs changed is said below."""
    from asapo_pipelines.runs.fingerprint import diff_configurations, own_changes

    changes = {
        unit: own_changes(what)
        for unit, what in diff_configurations(old.configurations, new.configurations).items()
    }
    said = "; ".join(f"{unit} ({', '.join(what)})" for unit, what in changes.items() if what)
    since = f"{old.id}'s last session -> {new.id}"
    line = f"configuration ({since}): {said or 'unchanged'}"
    # a run resumed under other settings holds results of each: the replay, made under one,
    # differs from them even where its configuration is the last session's
    sessions = old.sessions
    kinds = {
        tuple(sorted((u, c.get("fingerprint")) for u, c in s["configurations"].items()))
        for s in sessions
    }
    if len(kinds) > 1:
        line += (
            f"; {old.id}'s results were made in {len(sessions)} sessions under {len(kinds)} "
            "configurations, the replay's under one"
        )
    return line


def print_comparison(
    old_id: str,
    new_id: str,
    rows: dict[str, list[Any]],
    sent: dict[str, list[str]],
) -> None:
    """Old against new for each value the units' summaries declare, "(changed)" where they
    differ; write counts are shown in one line, not compared (`is_write_count`). First, for
    each unit, what it sent on each output stream (`local.sent.compare_sent`): a summary
    holds where a unit ended, not each decision on the way."""
    click.echo(f"old ({old_id}) -> new ({new_id}):")
    for instance in sorted({*rows, *sent}):
        click.echo(f"{instance}:")
        for line in sent.get(instance, []):
            click.echo(f"  {line}")
        items = rows.get(instance, [])
        counts = [what for what, _, _ in items if is_write_count(what)]
        for what, a, b in items:
            if what not in counts:
                mark = "" if a == b else "   (changed)"
                click.echo(f"  {what}: {show(a)} -> {show(b)}{mark}")
        if counts:
            # the values stay visible (what the old run stored is worth seeing), unmarked
            stored = ", ".join(f"{w} {show(a)} -> {show(b)}" for w, a, b in items if w in counts)
            click.echo(
                "  stored, not compared (a replay does not store again what its output "
                f"already holds): {stored}"
            )
