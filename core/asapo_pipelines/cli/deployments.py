"""The runs of deployed pipelines (`pipeline deploy`, `start`, `stop` with any executor).

A deployment is a run like `pipeline run`'s: `deploy` begins or resumes it before anything is
submitted (saying so once the submission succeeded), with the same refusal of a changed
configuration (`--fresh`, `--resume`), and `stop` ends it with the workers' counts. The
record lives on the pipeline's transport, which the submitting host must reach (an embedded
store on the shared filesystem, the ASAP::O service); when it cannot, `deploy` says so and
the workers record the run themselves when they start.

A refused command changes no run: the executor is asked whether it refuses (`refuse`: the
pipeline is deployed already, the job runs already) before the run is recorded, the rule of
the local executor's `local.control.refused_while_running`. A deployment that ends on its own
(a batch pipeline whose every worker is done) ends its run `complete` or `failed` with the
workers' counts (`settle`), as the local supervisor ends `pipeline run`'s.

A submission that fails before any worker of its session started ran nothing: the run is left
as it was (`_end_failed`: its session ends void), so a failed deploy never turns a complete run
into a failed one, counts its work twice or names itself as the run's executor; a run it began
itself ends `failed`, with no counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from asapo_pipelines.cli.output import warn

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.executor import Executor, ExecutorStatus
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.runs import Run, RunStore
    from asapo_pipelines.transport.base import Transport

fresh_option = click.option(
    "--fresh", is_flag=True, help="Start a new run even if the last one could be resumed."
)
resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Go on with the last run although the configuration changed.",
)


#: the warnings `_open` gave in this process: `stop` and `status` open the run's record more
#: than once (to settle, then to end or to read it), and one unreachable transport is one line
_SAID: set[str] = set()


def _open(
    pipeline: Pipeline,
    catalog: Catalog,
    *,
    beginning: bool = False,
    read_only: bool = False,
    then: str = "",
    secrets_from: str = "",
) -> tuple[Transport, RunStore] | None:
    """The pipeline's transport and run store, or None (with a warning, once) when
    unreachable. Only a run `beginning` (a deploy) is recorded by its workers instead: they
    record it when they start; a run being read or ended is not, whatever its workers do.
    `read_only`: for a caller that only reads (`status`), so that an archived store can be
    looked at; `then`: what to do about it, added to the warning. A run `beginning` is
    refused when the transport's credentials are missing or refused (CredentialsError): this
    shell needs them to record the run, and its workers read the same unless the executor's
    tasks read them elsewhere (`Executor.secrets_from`), which is then said instead."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import TransportError, open_transport
    from asapo_pipelines.transport.errors import CredentialsError

    try:
        transport = open_transport(pipeline.transport.spec(), catalog, read_only=read_only)
    except TransportError as exc:
        if beginning and isinstance(exc, CredentialsError):
            why = (  # the tasks' `*_env` secrets come from elsewhere: only this shell lacks it
                "this shell needs it to record the run (the tasks read `*_env` secrets from "
                f"{secrets_from.format(pipeline=pipeline.name)})"
                if secrets_from
                else "every worker would fail on it too"
            )
            raise CredentialsError(f"{exc}; {why}, so nothing was submitted") from None
        said = (
            f"the run is not recorded: the pipeline's transport cannot be reached from here "
            f"({exc}); its workers record it when they start, without comparing the "
            "configuration with the last run"
            if beginning
            else f"the run's record is not read or updated: the pipeline's transport cannot "
            f"be reached from here ({exc}){then}"
        )
        if said not in _SAID:
            _SAID.add(said)
            warn(said)
        return None
    return transport, RunStore(transport, pipeline.name)


def announce(run: Any, what: str, pipeline: str, *, err: bool) -> None:
    """The line `pipeline run` and `deploy` print about the run they work in, and a warning
    when a new run passed over data of runs without a record (`RunStore.begin`)."""
    from asapo_pipelines.runs.lifecycle import (
        describe_changes,
        earlier_errors_clause,
        last_end_clause,
    )

    run_id = run.id
    changes = run.events[-1].get("changes") or {}
    unrecorded = run.start.get("unrecorded_runs") if what == "started" else None
    if unrecorded:
        runs = f"run {unrecorded[0]}" if len(unrecorded) == 1 else f"runs {', '.join(unrecorded)}"
        warn(
            f"the store holds data of {runs} of pipeline {pipeline} without a record (the run "
            f"records were moved aside or lost): this run is {run_id}, so that it computes its "
            "results afresh"
        )
    if what == "started":
        click.echo(f"run {run_id} of pipeline {pipeline} starts", err=err)
        return
    if what == "continued":
        click.echo(f"run {run_id} of pipeline {pipeline} goes on (it was not stopped)", err=err)
        return
    # a resume after a failed or lost session says what ended it (its end was recorded
    # by this start when the supervisor could not record it)
    ended = last_end_clause(run)
    # inputs turned away before are not turned away again (the error stream holds each once)
    errors = earlier_errors_clause(run)
    if what == "resumed":
        line = f"resuming run {run_id} of pipeline {pipeline} (unchanged)"
    else:
        line = f"resuming run {run_id} under a changed configuration: {describe_changes(changes)}"
    # after the parenthesis, not in it: the session's message often ends in one of its own
    # (`... (relative paths ... folder, DIR)`), which read `...))`
    line += f"; {ended}" if ended else ""
    click.echo(line + (f"; {errors}" if errors else ""), err=err)


@dataclass(frozen=True)
class Began:
    """The run `begin` works in, and when the session it recorded began: None when it went on
    in the run's running session (`_goes_on`) and recorded none. `run` and `what` are what
    `announce` says of it once the submission succeeded (`deployment_run`)."""

    run_id: str
    session: float | None
    run: Any
    what: str
    pipeline: str

    def announce(self, *, err: bool) -> None:
        announce(self.run, self.what, self.pipeline, err=err)


def begin(
    file: str,
    executor: str,
    *,
    fresh: bool = False,
    resume: bool = False,
    restart: bool = False,
    deployed_run: str | None = None,
    secrets_from: str = "",
) -> Began | None:
    """Begin or resume FILE's run for a deployment with `executor`; what it began (unsaid:
    `Began.announce`), or None when the transport cannot be reached from here. Raises
    `RunsError` (nothing written, nothing submitted) when the configuration changed without
    --fresh or --resume. With `restart` (`pipeline start`: the job as it was deployed runs
    again) the last run gets a new session, refused (`_refuse_restart`) when FILE's
    configuration is not the run's, or when the store no longer holds `deployed_run`, the
    run the deployment's workers were given."""
    from asapo_pipelines.runs.lifecycle import prepare
    from asapo_pipelines.worker.launch import load

    pipeline, catalog = load(Path(file))
    opened = _open(pipeline, catalog, beginning=True, secrets_from=secrets_from)
    if opened is None:
        return None
    transport, store = opened
    try:
        store.claim(file)
        latest = store.latest(resumable=True) if restart else None
        if restart:
            _refuse_restart(store, latest, pipeline, catalog, file, deployed_run)
        if latest is not None and _goes_on(latest, executor):
            run, what = latest, "continued"
        elif latest is not None:
            run, what = store.resume(latest, details={"executor": executor}), "resumed"
        else:
            run, what = prepare(
                store,
                pipeline,
                catalog,
                Path(file),
                fresh=fresh,
                resume=resume,
                mode="deploy",
                details={"executor": executor},
            )
    finally:
        transport.close()
    session = None if what == "continued" else run.session.get("time")
    return Began(run.id, session, run, what, pipeline.name)


def _refuse_restart(
    store: RunStore,
    latest: Run | None,
    pipeline: Pipeline,
    catalog: Catalog,
    file: str,
    deployed_run: str | None,
) -> None:
    """Refuse `pipeline start` (nothing recorded, nothing submitted) when it would not go on
    with the deployment's run as FILE configures it. A store that no longer holds the run its
    workers were given (a Redis that lost its data): a new run r1 began in silence, and the
    source sent every input again into results that held them (an outside tester's NeXus
    file had each entry twice). A FILE whose units' configuration is not the run's: the job
    as deployed runs the old one (`pipeline deploy` refuses the same edit)."""
    import shlex

    from asapo_pipelines.runs.fingerprint import configurations, diff_configurations
    from asapo_pipelines.runs.lifecycle import describe_changes
    from asapo_pipelines.runs.store import RunsError

    where = shlex.quote(file)
    if deployed_run is not None and deployed_run not in store.run_ids():
        raise RunsError(_lost_sentence(deployed_run, pipeline.name, store.run_ids(), file))
    if latest is None:
        return
    changes = diff_configurations(latest.configurations, configurations(pipeline, catalog))
    if changes:
        raise RunsError(
            f"the configuration changed since run {latest.id} was deployed: "
            f"{describe_changes(changes)}; `pipeline start` would run the job as deployed, so "
            f"nothing was started: `pipeline deploy --resume {where}` applies the change, or "
            "put the file back as it was"
        )


def _lost_sentence(
    deployed_run: str, pipeline: str, held: list[str], file: str, so: str = ""
) -> str:
    """The sentence of a store that no longer holds the deployment's run, as `start` refuses
    with it and `status` and `stop` warn of it; `so`: what the command did not do for it. What
    the store holds instead is said as a worker started for the run says it (`held_instead`)."""
    import shlex

    from asapo_pipelines.runs.store import held_instead

    return (
        f"the store no longer holds run {deployed_run} of this deployment of pipeline "
        f"{pipeline} ({held_instead(held)}: its data was lost or emptied){so}; `pipeline "
        f"deploy --fresh {shlex.quote(file)}` processes every input again"
    )


def lost_run(file: str | None, executor: Executor, so: str = "") -> str | None:
    """`_lost_sentence` when the store no longer holds the run the deployment's workers were
    given (`Executor.deployed_run`); None when it holds it, when the executor kept none, or
    when the deployment or the store cannot be read from here (the command says so itself).
    `status` showed every unit `not started` and exited 0 without a word of it, and `stop`
    recorded no end in silence. Read alone: opened to be written, an embedded store moved
    away was made again, empty, by a command that only looked (`settle`, `end`)."""
    from asapo_pipelines.errors import PipelinesError
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    pipeline = executor.pipeline
    if file is None or pipeline is None or Path(file).suffix == ".json":
        return None
    try:
        deployed = executor.deployed_run()
        if deployed is None:
            return None
        with open_transport(pipeline.transport.spec(), executor.catalog, read_only=True) as t:
            held = RunStore(t, pipeline.name).run_ids()
    except (PipelinesError, NotImplementedError):  # a service that lists no data sources
        return None
    if deployed in held or _transport_edited(file, executor):
        return None
    return _lost_sentence(deployed, pipeline.name, held, file, so)


def _transport_edited(file: str, executor: Executor) -> bool:
    """Whether FILE's transport was edited since it was deployed: the store read through it is
    not the deployment's, so its lacking the run says nothing of the deployment's (`status`
    says of the edit that its counters are read through it, `_say_deployed_edit`). Said lost,
    `status` of a deployment whose store held its run exited 1."""
    from asapo_pipelines.errors import PipelinesError

    try:
        change = edited_since_deployed(file, executor)
    except PipelinesError:
        return False
    return change is not None and change.touches("transport")


@dataclass(frozen=True)
class Edit:
    """What a pipeline file changed against the copy a deployment runs: each changed top-level
    section, a unit on its own (`units.NAME`), with its words. Said as its words ("advisor
    (params.target_noise 0.00012 -> 0.0001); transport (...)"); asked by section, so that a
    unit named like a section (a unit `transport`) is not taken for it."""

    changes: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return "; ".join(said for _, said in self.changes)

    def touches(self, section: str) -> bool:
        return any(name == section for name, _ in self.changes)


def edited_since_deployed(file: str, executor: Executor) -> Edit | None:
    """What FILE changed against the copy the deployment's workers run (`deployed_text`);
    None when they hold the same document (comments and layout aside) or no copy is kept
    here."""
    from asapo_pipelines.launchplan.job import delivered_file
    from asapo_pipelines.pipeline.loader import LoadFailed, load_document

    deployed = executor.deployed_text()
    if deployed is None or executor.pipeline is None:
        return None
    try:
        # as delivered: the copy's transport paths were made absolute
        now = delivered_file(executor.pipeline, Path(file).read_text(encoding="utf-8"))
        old, new = load_document(deployed)[0].data, load_document(now)[0].data
    except (OSError, UnicodeDecodeError, LoadFailed):
        return None
    if old == new or not isinstance(old, dict) or not isinstance(new, dict):
        return None
    return Edit(tuple(_sections_changed(old, new)))


def _sections_changed(
    old: dict[str, Any], new: dict[str, Any], within: str = ""
) -> list[tuple[str, str]]:
    """Each top-level section that differs (each unit on its own, `units.NAME`), with its
    changed values in words."""
    said = []
    for key in dict.fromkeys([*old, *new]):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if not within and key == "units" and isinstance(a, dict) and isinstance(b, dict):
            said += _sections_changed(a, b, "units.")
        elif a is None or b is None:
            said.append((within + key, f"{key} ({'added' if a is None else 'removed'})"))
        else:
            said.append((within + key, f"{key} ({', '.join(_values_changed(a, b))})"))
    return said


def _values_changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """ "path old -> new" for each value that differs (a unit's `params.` left out)."""
    import json

    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in dict.fromkeys([*old, *new]):
            inner = "" if not prefix and key == "params" else f"{prefix}{key}."
            out += _values_changed(old.get(key), new.get(key), inner)
        return out
    if old == new:
        return []
    shown = [json.dumps(v, default=str) for v in (old, new)]
    return [f"{prefix.rstrip('.')} {shown[0]} -> {shown[1]}".strip()]


def refuse_edited_start(file: str, executor: Executor) -> None:
    """`pipeline start` of a deployment whose FILE was edited since it was deployed runs the
    copy deployed, not FILE: refused in one sentence naming the edit (it said "resuming run
    r1 (unchanged)" and ran the old advisor target, an outside tester)."""
    import shlex

    from asapo_pipelines.errors import UsageError

    change = edited_since_deployed(file, executor)
    if change:
        where = shlex.quote(file)
        raise UsageError(
            f"{file} was edited after it was deployed: {change}; `pipeline start` would run "
            f"the copy deployed, so nothing was started: `pipeline deploy --resume {where}` "
            "applies the edit, or put the file back as it was"
        )


def _goes_on(run: Any, executor: str) -> bool:
    """Whether `pipeline start` continues the run's session rather than beginning one: the
    deployment was never stopped (its Slurm watcher died, say), so its session never ended.
    A new session there would leave the workers still running counting in the old one and
    those started again counting from zero in the new one, and the run's end would record
    neither session's whole work; in the same session a worker started again counts on
    from its predecessor's last record, as after a restart by the watcher."""
    return bool(run.state == "running" and session_executor(run) == executor)


def end(
    file: str,
    executor: str,
    state: str,
    message: str = "",
    *,
    stopped: bool = False,
    at: float | None = None,
    then: str = "",
) -> str | None:
    """End FILE's running run if `executor` deployed it, with the last counts of the workers of
    its sessions not ended yet (`_unended`), those of workers just `stopped` once they are
    final (`_final_records`); the run's id, or None when there was none to end. `at`: when
    its jobs ended, when the executor knows (a `stop` repeated once the transport is back
    records the first one's time, not its own). `then`: what the warning of a transport that
    cannot be reached adds (`stop_again`)."""
    from asapo_pipelines.runs.lifecycle import summaries_of
    from asapo_pipelines.worker.launch import load

    pipeline, catalog = load(Path(file))
    opened = _open(pipeline, catalog, then=then)
    if opened is None:
        return None
    transport, store = opened
    try:
        if _running_run(store, executor) is None:
            return None
        records = _worker_records(Path(file))
        # asked again right before the end is written: the counters take a while to read, and
        # another command may have ended the run meanwhile (a second `ended` would count every
        # worker's work twice in the run's totals)
        run = _running_run(store, executor)
        if run is None:
            return None
        records = _unended(run, records)
        if stopped:
            records = _final_records(Path(file), run, records)
        summaries, counts = summaries_of(records, set(pipeline.units))
        began = float(run.session.get("time") or 0)
        # never before the session began: an `at` of an earlier stop of the deployment
        when = at if at is not None and at >= began else None
        store.end(run, state, message, summaries, counts, at=when)
        return run.id
    finally:
        transport.close()


def stop_again(file: str | None) -> str:
    """What `stop` adds to its warning of a transport it cannot reach: nothing else records
    the end of a stopped deployment's run (it stayed `running` in `pipeline runs`)."""
    import shlex

    if file is None:
        return ""
    return (
        f"; run `pipeline stop {shlex.quote(file)}` again once it can be reached, to record "
        "the end of the run"
    )


def latest_run(pipeline: Pipeline, catalog: Catalog) -> Run | None:
    """The pipeline's latest run record, read alone (an archived store can be looked at);
    None when there is none or the store cannot be reached (said once, by `_open`)."""
    opened = _open(pipeline, catalog, read_only=True)
    if opened is None:
        return None
    transport, store = opened
    try:
        return store.latest()
    finally:
        transport.close()


def unapplied(file: str, run: Run | None) -> str:
    """For a deployment whose last session ended: the line `pipeline run` ends with when a
    unit's results are still those of other settings than the ones in force (it processed
    nothing under a configuration a `deploy --resume` changed; `unapplied_note`). `status`
    says it, as nothing in the foreground sees a deployment's session end. Read from `run`,
    the file's latest run record (`latest_run`, which `status` reads once for all it says):
    the `ended` event's counts are what each worker did since the session before's end.
    Empty while the session goes on, or when there is no record."""
    import shlex

    from asapo_pipelines.runs.lifecycle import unapplied_note
    from asapo_pipelines.worker.status import session_label

    end = None if run is None else run.last_end
    if run is None or end is None:
        return ""
    label = session_label(run.id, run.session.get("time"))
    counters = {
        name: {**counts, "instance": name.partition("[")[0], "session": label}
        for name, counts in (end.get("counts") or {}).items()
        if isinstance(counts, dict)
    }
    return unapplied_note(run, label, counters, shlex.quote(file))


#: how long the end of a deployment's run waits for its workers' final status records: a
#: stopped worker publishes its last counts once its batch is done and acknowledged
FINAL_RECORDS_SECONDS = 15.0


def _final_records(file: Path, run: Any, records: dict[str, Any]) -> dict[str, Any]:
    """The run's unended records (`_unended`) once every one of them is final, or as they are
    after `FINAL_RECORDS_SECONDS`. `stop` cancels the jobs and ends the run at once: counted
    from the records published before the workers' last batches, the run said 29 merges for
    the 30 in the NeXus file (an outside tester). A worker killed outright never publishes a
    final record: its last one is what it did, and the wait ends at the bound."""
    import time

    from asapo_pipelines.worker.status import ENDED_STATES

    deadline = time.monotonic() + FINAL_RECORDS_SECONDS
    while any(r.get("state") not in ENDED_STATES for r in records.values()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
        records = _unended(run, _worker_records(file))
    return records


def _worker_records(file: Path) -> dict[str, Any]:
    """Each worker's last status record ("group[i]"); none when the transport holds none."""
    from asapo_pipelines.counters import read_status
    from asapo_pipelines.transport import TransportError

    try:
        return _by_label(read_status(file))
    except TransportError:
        return {}


def _unended(run: Any, records: dict[str, Any]) -> dict[str, Any]:
    """The records of workers of the run's sessions that no `ended` event counted yet (their
    `Counters.session`). A record of an ended session was counted when it ended: a session
    whose workers never started (a failed submission, a job never placed) still finds the
    session before's records, and counting them again added that work twice. Every session
    since the last end, not only the last: a deploy updating a running deployment begins a
    session while that deployment's workers go on in theirs."""
    sessions: set[str] = set()
    for event in run.events:
        if event.get("event") == "ended":
            sessions.clear()
        elif event.get("event") in ("started", "resumed"):
            sessions.add(f"{run.id}@{event.get('time')}")
    return {label: r for label, r in records.items() if r.get("session") in sessions}


def _state_before(run: Any) -> str | None:
    """The run's state before its last session began; None when that session started it."""
    from asapo_pipelines.runs.store import Run

    kinds = ("started", "resumed")
    last = max((i for i, e in enumerate(run.events) if e.get("event") in kinds), default=0)
    return Run(run.id, run.events[:last]).state if last else None


def _end_failed(file: str, executor: str, began: Began, error: Exception) -> None:
    """End the session `began` recorded for a deployment whose submission failed (`_ended`);
    a failure to write it is a warning: the command's own error is what the user must see.
    A plugin executor's own exception (`ExecutorFailed`) is recorded in its own words: the
    record names the deployment already, as the command's sentence does for itself."""
    from asapo_pipelines.errors import PipelinesError
    from asapo_pipelines.executor import ExecutorFailed
    from asapo_pipelines.worker.launch import load

    if began.session is None:  # it went on in a session an earlier command began: still so
        return
    pipeline, catalog = load(Path(file))
    opened = _open(pipeline, catalog)
    if opened is None:
        return
    transport, store = opened
    try:
        said = error.reason if isinstance(error, ExecutorFailed) else str(error)
        _ended(store, Path(file), set(pipeline.units), began, f"the {executor} deployment", said)
    except PipelinesError as exc:
        warn(f"the end of run {began.run_id} was not recorded: {exc}")
    finally:
        transport.close()


def _ended(
    store: RunStore, file: Path, units: set[str], began: Began, what: str, error: str
) -> None:
    """End the failed deployment's session. One whose workers never reported ran nothing: an
    ended run it resumed is left with the state and counts it had (and its summaries: this
    session has none of its own). Else the run ends `failed`, with the counts of its sessions
    not ended yet: a run this session started, or one that was running before (a session
    never ended, whose workers' work is counted now). `what` names the deployment, `error`
    says what failed."""
    from asapo_pipelines.runs.lifecycle import summaries_of

    run = store.get(began.run_id)
    if run.state != "running" or run.session.get("time") != began.session:
        return  # ended or resumed meanwhile by another command: its session is not ours
    before = _state_before(run)
    records = _unended(run, _worker_records(file))
    if records or before in (None, "running"):
        summaries, counts = summaries_of(records, units)
        store.end(run, "failed", f"{what} failed: {error}", summaries, counts)
        return
    message = f"{what} failed before any of its workers started: {error}"
    # the run reads as it was: not run by this executor, not ended now, nor with this message
    store.end(run, str(before), message, run.summaries, void=True)


def _running_run(store: RunStore, executor: str) -> Any:
    """The newest run that is running with a last session `executor` deployed. Not simply the
    latest run: a local run started after a deployment (`pipeline run --fresh`) is the latest,
    and stopping the deployment must still end the deployment's own run."""
    for run_id in reversed(store.run_ids()):
        run = store.get(run_id)
        if run.start.get("mode") == "reprocess":
            continue
        if run.state == "running" and session_executor(run) == executor:
            return run
    return None


def session_executor(run: Any) -> str | None:
    """Which executor runs the run's last session: the one a deployment recorded, the local
    one for `pipeline run` (which records none), None for workers started by hand."""
    from asapo_pipelines.executor import LOCAL

    session = run.session
    if session.get("event") == "started" and session.get("mode") == "workers":
        return None
    return str(session.get("executor") or LOCAL)


def latest_local_run(pipeline: Pipeline, catalog: Catalog, file: Path) -> Any:
    """FILE's newest run when its last session was one of `pipeline run` (the local executor),
    running or ended, else None; None too when the store cannot be reached from here: the
    command then goes on as it would without this record."""
    from asapo_pipelines.executor import LOCAL
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import TransportError, open_transport

    spec = pipeline.transport.spec()
    if "embedded" in spec:  # an embedded store that is not there holds no run: made by no look
        spec["embedded"]["create"] = False
    try:
        with open_transport(spec, catalog) as transport:
            run = RunStore(transport, pipeline.name).latest(resumable=True)
    except (TransportError, NotImplementedError):  # a service that lists no data sources
        return None
    if run is None or session_executor(run) != LOCAL:
        return None
    recorded_file = run.start.get("file")
    return run if recorded_file == str(Path(file).resolve()) else None


#: The states in which an executor reports a deployment that ended on its own.
FINISHED = ("complete", "failed")


def settle(executor: Executor, file: str | None, then: str = "") -> str | None:
    """End the run of a deployment that ended on its own (`FINISHED`) and is still recorded as
    running; the state it was ended with, or None. Nothing else may: a batch pipeline's
    workers exit when their work is done, and the run would stay `running` for ever. The local
    executor's supervisor ends its runs itself (asking here as well could end one twice)."""
    from asapo_pipelines.errors import PipelinesError
    from asapo_pipelines.executor import LOCAL

    if file is None or executor.name == LOCAL:
        return None
    try:
        status = executor.status()
    except PipelinesError:  # nothing deployed, the scheduler unreachable: the command says so
        return None
    if status.state not in FINISHED:
        return None
    if end(file, executor.name, status.state, _finished(status), then=then) is None:
        return None
    return status.state


def _finished(status: ExecutorStatus) -> str:
    """The run's message for a deployment that ended on its own: how, and each failed unit
    (of a failed one: a complete deployment may list a failed attempt that was replaced),
    after a colon, not in brackets: a unit's detail is the worker's own error, which often
    ends in a bracket of its own, and the message read "... (exit code 78))"."""
    failed = [
        f"{i.unit} replica {i.replica}: {i.detail}" if i.detail else f"{i.unit} replica {i.replica}"
        for i in status.instances
        if i.state == "failed" and status.state == "failed"
    ]
    what = f"the {status.executor} deployment {status.deployment} ended {status.state}"
    return what + (f": {'; '.join(failed)}" if failed else "")


def refuse(executor: Executor, command: str) -> None:
    """Let the executor refuse `command` (`deploy`, `start`) before anything is recorded
    (`Executor.refuse`): a run resumed (or begun) for a command that was then refused was
    ended as `failed` while the deployment went on running."""
    executor.refuse(command)


@dataclass
class Submission:
    """What `deployment_run` hands the submission it is around: the run its workers are given
    (None: not recorded here), and whether the executor's result says a unit failed for good
    (`Executor.start`'s `failed` key), set by the caller once it has the result."""

    run_id: str | None
    failed: bool = False

    def judge(self, result: dict[str, Any]) -> dict[str, Any]:
        """`result`, noting a unit that failed for good: the run is then not said to start or
        go on (the executor ended it failed, and the command fails with its sentence)."""
        self.failed = bool(result.get("failed"))
        return result


@contextmanager
def failed_document(*, as_json: bool) -> Iterator[None]:
    """Around `deploy` or `start`: under --json, the document an executor's failed submission
    carries (`SubmissionFailed.result`: the command's result, with `failed`, instance -> why)
    is printed on stdout before the error is said on stderr, as a result that names a unit
    that failed for good is (`Submission`). The Slurm executor's `deploy --wait --json` of a unit
    that exited 78 within the wait printed the error alone, nothing a script could parse."""
    from asapo_pipelines.cli.output import print_json
    from asapo_pipelines.errors import SubmissionFailed

    try:
        yield
    except SubmissionFailed as exc:
        if as_json:
            print_json(exc.result)
        raise


@contextmanager
def deployment_run(
    file: str | None,
    executor: Executor,
    command: str,
    *,
    fresh: bool = False,
    resume: bool = False,
    restart: bool = False,
    quiet_stdout: bool = False,
) -> Iterator[Submission]:
    """Begin the run around a submission, said once it succeeded; a submission that fails ends
    it as failed. The executor refuses first (`refuse`): a refused command records nothing."""
    if file is None or Path(file).suffix == ".json":  # a compiled job: no pipeline file to record
        if fresh or resume:
            from asapo_pipelines.errors import UsageError

            raise UsageError("--fresh and --resume need a pipeline file")
        refuse(executor, command)
        yield Submission(None)
        return
    refuse(executor, command)
    # a queue server's allowed plans, asked before a cluster job is submitted, as `pipeline
    # run` asks them (the local executor's deploy is a `run --detach`, which asks itself)
    if command == "deploy" and executor.pipeline is not None and not executor.records_runs:
        from asapo_pipelines.pipeline.online import check_before_start

        check_before_start(
            executor.pipeline, executor.catalog, Path(file), file, executor=executor.name
        )
    if executor.records_runs:  # its `deploy` records the session (and would refuse a second)
        executor.run_flags = tuple(f for f, on in (("--fresh", fresh), ("--resume", resume)) if on)
        yield Submission(None)
        return
    if restart:
        refuse_edited_start(file, executor)
    deployed_run = executor.deployed_run() if restart else None
    began = begin(
        file,
        executor.name,
        fresh=fresh,
        resume=resume,
        restart=restart,
        deployed_run=deployed_run,
        secrets_from=executor.secrets_from,
    )
    submission = Submission(None if began is None else began.run_id)
    try:
        yield submission
    except Exception as exc:
        if began is not None:
            _end_failed(file, executor.name, began, exc)
        raise
    # said once the submission succeeded: a failed one resumed nothing ("resuming run r1"
    # followed by its error was false), and its error is then the one thing to read; nor
    # did one whose result names a unit that failed for good ("goes on", then its error)
    if began is not None and not submission.failed:
        began.announce(err=quiet_stdout)


def _by_label(counters: dict[str, Any] | None) -> dict[str, Any]:
    """`read_status`'s worker records keyed as `summaries_of` expects ("group[i]")."""
    workers = (counters or {}).get("workers") or []
    return {f"{w.get('instance')}[{w.get('replica') or 0}]": w for w in workers}
