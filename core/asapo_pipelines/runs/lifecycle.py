"""Starting, resuming, ending and replaying runs (what `pipeline run` and `reprocess` do around
the executor).

`prepare` decides, before anything starts: a first run, or `--fresh`, begins a new run; an
unchanged configuration resumes the latest run (its consumer groups and outputs make a re-run
process nothing twice); a changed one is refused with the changed units and params named,
unless `--resume` says to go on with the new configuration. A start while the latest run's
session runs under a live supervisor in another run directory is refused before anything is
recorded (`refuse_while_alive`), and so is a start while that session is a deployment that
still runs on another executor (`refuse_while_deployed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.options_text import set_options
from asapo_pipelines.runs.fingerprint import configurations, diff_configurations
from asapo_pipelines.runs.overrides import flat
from asapo_pipelines.runs.store import Run, RunsError, RunStore
from asapo_pipelines.transport import EndOfStream, MissingId, StreamFinished
from asapo_pipelines.worker.naming import data_source_for

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.transport.base import Transport


def describe_changes(changes: dict[str, list[str]]) -> str:
    return "; ".join(f"{unit} ({', '.join(what)})" for unit, what in changes.items())


def last_end_clause(run: Run) -> str:
    """What ended the session before the one just begun in `run`, when it did not end as
    asked (`failed`, `lost`): "its last session failed at 11:24:54: <why>". Empty otherwise.
    A session ended by the next start (a full disk, a killed supervisor) was recorded by that
    start, so the operator who starts again learns here what happened to the last one."""
    import time

    sessions = run.sessions
    if len(sessions) < 2 or sessions[-2]["state"] not in ("failed", "lost"):
        return ""
    last = sessions[-2]
    what = "was lost" if last["state"] == "lost" else "failed"
    when = float(last["ended"] or 0)
    today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(when))
    clock = time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", time.localtime(when))
    why = f": {last['message']}" if last.get("message") else ""
    return f"its last session {what} at {clock}{why}"


def earlier_errors_clause(run: Run) -> str:
    """How many inputs the run's earlier sessions sent to its error stream, per unit, and the
    command that lists them: "2 inputs of its earlier sessions are in the error stream (sink 2):
    `pipeline tail FILE errors --run r1` lists them". Empty when none did. A resumed session
    does not send them again (the error stream holds each once), so without this a user who
    resumes learns of them nowhere."""
    import shlex

    per_unit: dict[str, int] = {}
    for name, counters in run.counts.items():  # the ended sessions': the new one has none yet
        n = int((counters or {}).get("errors") or 0)
        if n > 0:
            unit = name.partition("[")[0]
            per_unit[unit] = per_unit.get(unit, 0) + n
    if not per_unit:
        return ""
    total = sum(per_unit.values())
    units = ", ".join(f"{unit} {n}" for unit, n in per_unit.items())
    file = shlex.quote(str(run.sessions[-1].get("file") or "FILE")) if run.sessions else "FILE"
    them = "it" if total == 1 else "them"
    inputs = "1 input" if total == 1 else f"{total} inputs"
    return (
        f"{inputs} of its earlier sessions {'is' if total == 1 else 'are'} in the error stream "
        f"({units}): `pipeline tail {file} errors --run {run.id}` lists {them}"
    )


def prepare(
    store: RunStore,
    pipeline: Pipeline,
    catalog: Catalog,
    pipeline_file: Path,
    *,
    fresh: bool = False,
    resume: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    mode: str = "run",
    details: dict[str, Any] | None = None,
    run_dir: Path | None = None,
) -> tuple[Run, str]:
    """The run to work in and what happened: "started", "resumed" or "resumed-changed".

    ``mode`` says what starts it (`run`, `deploy`); ``details`` go into the session's record
    (the executor and deployment of a deployed run); ``run_dir`` is the local run directory
    whose supervisor will run the session (`pipeline run`), recorded so that a start from
    another run directory (`--data-dir`) can tell that the session is alive."""
    if fresh and resume:
        raise RunsError("give --fresh or --resume, not both")
    configs = configurations(pipeline, catalog)
    text = Path(pipeline_file).read_text(encoding="utf-8")
    recorded = flat(overrides or {})
    latest = store.latest(resumable=True)
    if latest is not None:
        refuse_while_alive(store, latest, pipeline_file, run_dir)
        refuse_while_deployed(latest, pipeline, catalog, pipeline_file, session_of(details))
    for replaying in store.runs():
        # a reprocess is never the run resumed (`latest` passes it by), but while it goes on
        # in another data directory a run beside it writes the same sinks
        if replaying.start.get("mode") == "reprocess":
            refuse_while_alive(store, replaying, pipeline_file, run_dir)
    session = dict(details or {})
    if run_dir is not None:
        session["run_dir"] = str(Path(run_dir).resolve())
    if latest is None or fresh or _pruned(store, latest):
        run = store.begin(
            pipeline_file=pipeline_file,
            text=text,
            configurations=configs,
            overrides=recorded,
            mode=mode,
            details=session,
        )
        return run, "started"
    changes = diff_configurations(latest.configurations, configs)
    if not changes:
        resumed = store.resume(
            latest, overrides=recorded, details=session, text=text, pipeline_file=pipeline_file
        )
        return resumed, "resumed"
    if not resume:
        raise _changed(latest, changes)
    store.resume(
        latest,
        configurations=configs,
        changes=changes,
        overrides=recorded,
        details=session,
        text=text,
        pipeline_file=pipeline_file,
    )
    return latest, "resumed-changed"


def refuse_changed(
    store: RunStore, pipeline: Pipeline, catalog: Catalog, *, fresh: bool, resume: bool
) -> None:
    """Refuse as `prepare` does a start that would resume the latest run under a changed
    configuration without --fresh or --resume, before the start does anything: a lost run's
    workers still running are not stopped by a start that is refused."""
    if fresh and resume:
        raise RunsError("give --fresh or --resume, not both")
    if fresh or resume:
        return
    latest = store.latest(resumable=True)
    if latest is None or _pruned(store, latest):
        return
    changes = diff_configurations(latest.configurations, configurations(pipeline, catalog))
    if changes:
        raise _changed(latest, changes)


def _changed(latest: Run, changes: dict[str, list[str]]) -> RunsError:
    return RunsError(
        f"the configuration changed since run {latest.id}: {describe_changes(changes)}; "
        f"run with --fresh for a new run ({latest.id} stays listed until pruned) or with "
        f"--resume to go on with {latest.id} under the new configuration"
    )


def refuse_while_alive(
    store: RunStore, latest: Run, pipeline_file: Path, run_dir: Path | None
) -> None:
    """Refuse, before anything is recorded, a start while the latest run's session runs in
    another local run directory (`pipeline run --data-dir`): the supervisor lock that keeps
    two starts apart is per run directory, and a second session of the run (or a new run
    beside it) would write the same outputs, fail on them and end the live run `failed`. A
    session whose supervisor is gone (killed, the machine restarted) is stale: it may go on."""
    from asapo_pipelines.launchplan.rundir import lock_holder, recorded_state, supervisor_alive

    recorded = latest.session.get("run_dir")
    if latest.state != "running" or not recorded:
        return
    live = Path(recorded)
    if run_dir is not None and Path(run_dir).resolve() == live:
        return  # its own run directory: the supervisor's lock, held by our caller, decides
    data_dir = live.parent.parent  # run directories are <data>/runs/<name>
    stop = f"`pipeline stop {pipeline_file} --data-dir {data_dir}`"
    try:
        alive = supervisor_alive(live)
    except OSError as exc:  # another user's run directory: it may well be alive
        raise RunsError(
            f"run {latest.id} of pipeline {store.pipeline} is recorded as running in {live}, "
            f"which cannot be read here to tell whether it still runs ({exc.strerror}); "
            f"whoever started it stops it with {stop}"
        ) from None
    if not alive:
        return
    state = recorded_state(live)  # its job and pid, for the refusal (the lock decides)
    pid = lock_holder(state)
    raise RunsError(
        f"job {state.get('job') or live.name} is already running locally (run {latest.id}"
        + (f", supervisor pid {pid}" if pid else "")  # none while it is being started
        + f", data directory {data_dir}); stop it first with {stop}"
    )


def session_of(details: dict[str, Any] | None) -> str:
    """The executor of the session being started: a deployment records its own, `pipeline
    run` none (the local executor)."""
    from asapo_pipelines.executor import LOCAL

    return str((details or {}).get("executor") or LOCAL)


def refuse_while_deployed(
    latest: Run, pipeline: Pipeline, catalog: Catalog, pipeline_file: Path, starting: str
) -> None:
    """Refuse, before anything is recorded, a start (`pipeline run`, a deploy with another
    executor) while the latest run's session is a deployment that still runs: a second copy
    of the run would read the same inputs and write every result twice. The deployment's
    executor decides, asked as `pipeline deploy` asks it (`Executor.refuse`, here for
    ``"run"``: Slurm looks at its watcher and squeue, Nomad at the job). A deployment with
    the starting executor is that executor's to refuse (`pipeline deploy` asks it first)."""
    from asapo_pipelines.executor import LOCAL, executor_class

    deployed = latest.session.get("executor")
    if latest.state != "running" or deployed in (None, LOCAL, starting):
        return
    descriptor = catalog.executors.get(str(deployed))
    if descriptor is None:  # its plugin is gone: nothing here can tell, or stop it
        return
    executor = executor_class(descriptor).made(pipeline, catalog, pipeline_file, {})
    executor.refuse("run")


def _pruned(store: RunStore, run: Run) -> bool:
    """Whether an ended run's data is gone (`pipeline prune --older-than` dropped its streams):
    resuming it would read every input again into a run whose outputs, in a NeXus file say,
    already hold that run's results, and changed inputs would be taken for duplicates. A new
    run (the next id: retention keeps the run records) makes them new results."""
    if run.state == "running":
        return False
    # a run that wrote nothing has nothing to lose by resuming
    if not any(c.get("processed") or c.get("outputs") for c in run.counts.values()):
        return False
    prefix = data_source_for("", store.pipeline, run.id)
    # age retention (`--older-than`) leaves a data source listed without streams; `prune
    # --run` removes the sources too, with the run's record: either way none holds a stream
    for source in store.transport.data_sources():
        if source.startswith(prefix):
            with store.transport.consumer(source, "run-records") as consumer:
                if consumer.streams():
                    return False
    return True


#: the counters a session records for each unit replica (`redelivered`: the messages handed
#: to it again after a worker was killed, which `processed` counts once; `reapplied`: restored
#: inputs it gave its results from under the session's settings)
#: a status record's counters the run's record keeps per session (`Run.counts` sums them):
#: `changed_not_sent` too, keys a source had sent before with other content (a file rewritten
#: after it was sent), so that `pipeline runs` still says so once the session's lines are gone
COUNTS = (
    "processed",
    "redelivered",
    "errors",
    "outputs",
    "duplicates_skipped",
    "reapplied",
    "changed_not_sent",
)


def summaries_of(
    counters: dict[str, Any] | None, groups: set[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The units' summaries and counts from their final status records ("group[i]" keys)."""
    summaries: dict[str, Any] = {}
    counts: dict[str, Any] = {}
    for label, record in sorted((counters or {}).items()):
        instance = str(record.get("instance") or label.partition("[")[0])
        if groups is not None and instance not in groups:
            continue
        replica = int(record.get("replica") or 0)
        name = instance if replica == 0 else f"{instance}[{replica}]"
        if record.get("summary"):
            summaries[name] = record["summary"]
        counts[name] = {k: record.get(k, 0) for k in COUNTS}
    return summaries, counts


def current_session(run: Run, at: float | None = None) -> str:
    """The session (`worker.status.session_label`) whose status records are the run's latest
    session's, or, given `at` (when a supervisor started), the last session begun by then: only
    those records are that session's counts and summaries (`worker.status.in_session`)."""
    from asapo_pipelines.worker.status import session_label

    began = run.session.get("time")
    if at is not None:
        for session in run.sessions:
            if session["began"] is not None and float(session["began"]) <= float(at):
                began = session["began"]
    return session_label(run.id, began)


# -- reprocess -------------------------------------------------------------------------------
def source_streams(pipeline: Pipeline, catalog: Catalog) -> dict[str, list[str]]:
    """source instance -> the streams it writes (the messages a reprocess replays)."""
    out: dict[str, list[str]] = {}
    for name, config in pipeline.units.items():
        descriptor = pipeline.descriptor(name, catalog)
        if descriptor.role != "source":
            continue
        streams = dict(config.outputs)
        for port in descriptor.outputs:
            streams.setdefault(port.name, f"{name}-{port.name}".replace("_", "-"))
        out[name] = sorted(set(streams.values()))
    return out


def check_replayable(
    transport: Transport, pipeline: Pipeline, catalog: Catalog, old: Run
) -> list[str]:
    """The data sources to replay; a sentence when a source's messages are gone."""
    present = set(transport.data_sources())
    sources = []
    for instance, streams in source_streams(pipeline, catalog).items():
        for stream in streams:
            source = data_source_for(stream, pipeline.name, old.id)
            held = 0
            if source in present:
                with transport.consumer(source, "reprocess-check") as consumer:
                    held = sum(i.last_id for i in consumer.streams())
            if not held:
                raise RunsError(
                    f"run {old.id} cannot be reprocessed: the messages its source {instance} "
                    f"wrote to stream {stream} are no longer in the store (pruned)"
                )
            sources.append(stream)
    if not sources:
        raise RunsError(f"pipeline {pipeline.name} has no source unit whose messages to replay")
    return sources


def replay(transport: Transport, pipeline: str, streams: list[str], old: Run, new: Run) -> int:
    """Copy the source messages of `old`, as stored (ids, payloads, metadata and provenance,
    scans and their order), into `new`'s data sources, every stream finished; returns how many."""
    copied = 0
    for stream in streams:
        src = data_source_for(stream, pipeline, old.id)
        dst = data_source_for(stream, pipeline, new.id)
        with (
            transport.consumer(src, "reprocess-replay") as consumer,
            transport.producer(dst) as producer,
        ):
            for info in consumer.streams():
                for msg_id in range(1, info.last_id + 1):
                    try:
                        msg = consumer.get_by_id(info.name, msg_id)
                    except (MissingId, EndOfStream, StreamFinished):
                        continue
                    payload = None if msg.payload is None else bytes(msg.payload)
                    producer.send(info.name, payload, dict(msg.metadata), id=msg.id)
                    copied += 1
                producer.flush()
                # a stream a watching source left open when its run stopped is finished too:
                # a replay gets nothing more, and its readers end once they have it all
                producer.finish_stream(
                    info.name,
                    last_id=info.last_id,
                    next_stream=info.next_stream if info.finished else None,
                )
            producer.flush()
    return copied


# -- old against new -------------------------------------------------------------------------
def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, item in enumerate(value):
            label = item.get("file") or item.get("target") or i
            rest = {k: v for k, v in item.items() if k not in ("file", "target")}
            out.update(_leaves(rest, f"{prefix}{label}."))
        return out
    return {prefix.rstrip("."): value}


def compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[tuple[str, Any, Any]]]:
    """instance -> [(what, old value, new value)] for every value either summary declares."""
    out: dict[str, list[tuple[str, Any, Any]]] = {}
    for instance in sorted({*old, *new}):
        a, b = _leaves(old.get(instance) or {}), _leaves(new.get(instance) or {})
        rows = [(key, a.get(key), b.get(key)) for key in dict.fromkeys([*a, *b])]
        if rows:
            out[instance] = rows
    return out


def record_end(pipeline_file: str, job: dict[str, Any], result: Any) -> None:
    """End the run a detached supervisor worked in (`ASAPO_PIPELINES_RUN`), with the units'
    summaries and counts; best effort: the run's outputs are what matters, and they are done."""
    import logging
    import os

    from asapo_pipelines.worker.launch import RUN_ENV

    run_id = os.environ.get(RUN_ENV)
    if not run_id or not pipeline_file:
        return
    try:
        from asapo_pipelines.catalog import Catalog
        from asapo_pipelines.pipeline import load_pipeline
        from asapo_pipelines.transport import open_transport
        from asapo_pipelines.worker.status import latest_status, status_consumer

        catalog = Catalog.load()
        pipeline = load_pipeline(pipeline_file, catalog)
        # the name the run was started under, which its job keeps: the file's `pipeline:` may
        # have been edited since, and the file's name now would end another pipeline's run
        name = str((job["Job"].get("Meta") or {}).get("pipeline") or pipeline.name)
        groups = {g["Name"] for g in job["Job"]["TaskGroups"]}
        with open_transport(pipeline.transport.spec(), catalog) as transport:
            store = RunStore(transport, name)
            run = store.get(run_id)
            with status_consumer(transport, name) as consumer:
                counters = latest_status(consumer, job, current_session(run))
            summaries, counts = summaries_of(dict(counters), groups)
            store.end(run, result.status, result.message, summaries, counts)
    except Exception as exc:  # the record is a bonus here; the log says why it is missing
        logging.getLogger("asapo_pipelines.runs").warning(
            "could not record the end of run %s: %s", run_id, exc
        )


def unapplied_note(
    run: Run,
    label: str,
    counters: Any,
    where: str,
    runs: Callable[[], Iterable[Run]] | None = None,
) -> str:
    """A line for a session after which a unit's results are still those of other settings
    than the ones in force: it processed and sent nothing under them, in this session (resumed
    under a changed configuration: the line "resuming run r1 under a changed configuration"
    above the table suggested otherwise) or in any since they changed (a later session said
    "(unchanged)", against the previous one, and showed the old results without a word).
    Empty when every unit's results were made with the settings now in force. `label` is the
    session's (`session_label`), whose workers' status records `counters` holds; `runs` reads
    the pipeline's runs, only when a unit's results are stale, to name a reprocess of `run`
    already made under those settings (an outside tester was asked again for the reprocess
    they had just made)."""
    from asapo_pipelines.runs.fingerprint import own_changes, own_configuration_changed
    from asapo_pipelines.worker.status import in_session

    # the session's start: the run's record gets its end appended when the session ends
    began = run.session
    # the units whose own settings changed now: those fed by one are said with "made from them"
    changed = {u for u, w in (began.get("changes") or {}).items() if own_changes(w)}
    # what a unit processed or sent in this session, or gave from its restored state under the
    # settings in force at its start (a merge under another limit), also when that came out
    # as it was and was not sent again
    worked: dict[str, int] = {}
    for record in (counters or {}).values():
        if isinstance(record, dict) and in_session(record, label):
            unit = str(record.get("instance", ""))
            done = sum(int(record.get(k) or 0) for k in ("processed", "outputs", "reapplied"))
            worked[unit] = worked.get(unit, 0) + done
    # whose results are another configuration's: a unit whose last session with work ran
    # under the settings now in force (back from an excursion that processed nothing) made
    # its results with them already; one that never worked has none
    # a resumed session's event records only what changed: the session as carried holds all
    carried = run.sessions[-1] if run.sessions else {}
    in_force = carried.get("configurations") or {}
    stale = [
        unit
        for unit in in_force
        if not worked.get(unit)
        and own_configuration_changed(run.configuration_of_last_work(unit), in_force.get(unit))
    ]
    if not stale:
        return ""
    now = [u for u in stale if u in changed]
    before = [u for u in stale if u not in changed]
    told = []
    if now:
        its = "its" if len(now) == 1 else "their"
        told.append(
            f"{', '.join(now)} processed no message under {its} changed configuration in this "
            "session"
        )
    if before:
        its = "its configuration" if len(before) == 1 else "their configurations"
        told.append(
            f"{', '.join(before)} {'none' if now else 'processed no message'} since {its} "
            "changed in an earlier session"
        )
    its = "its" if len(stale) == 1 else "their"
    remade = _reprocessed(run, runs() if runs else (), {u: in_force[u] for u in stale})
    if remade is not None:
        return (
            f"{', '.join(told)}: {its} results in run {run.id}, and those made from them, are "
            f"still the earlier settings'; run {remade.id} is {run.id}'s inputs reprocessed "
            f"under the settings in force (`pipeline tail {where} STREAM --run {remade.id}` "
            f"reads its results), while `pipeline run` goes on with {run.id}"
        )
    # with this session's --set: a replay runs the file as it is plus its own --set, and
    # without them it would apply the file's settings, not the change said here
    sets = set_options(carried.get("overrides") or {})
    return (
        f"{', '.join(told)}: {its} results, and those made from them, are still the earlier "
        f"settings'; `pipeline reprocess {where} --from {run.id}{sets}` applies the "
        "change to the run's inputs"
    )


def _reprocessed(run: Run, runs: Iterable[Run], wanted: dict[str, Any]) -> Run | None:
    """The newest complete reprocess of `run` whose units in `wanted` had those configurations
    (their own: what their upstream contributes is theirs to match), or None."""
    from asapo_pipelines.runs.fingerprint import own_configuration

    found = None
    for other in runs:
        start = other.start
        if start.get("mode") != "reprocess" or start.get("from_run") != run.id:
            continue
        if other.state != "complete":
            continue
        made = other.configurations
        if all(
            own_configuration(made.get(unit)) == own_configuration(config)
            for unit, config in wanted.items()
        ):
            found = other
    return found
