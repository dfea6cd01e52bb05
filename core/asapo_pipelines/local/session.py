"""The run bookkeeping `pipeline run` and `pipeline reprocess` do around the executor: claim
the pipeline's namespace, start or resume a run (see `asapo_pipelines.runs`), and end it.

A run's counts are the sum of what each of its sessions recorded when it ended, each from its
workers' last status records. A session whose supervisor was lost (killed outright, the
machine stopped) recorded no end: the next start in the run ends it first, as `lost`, with the
counts its workers published last, so that what they processed is not dropped from the run's
totals. Workers it left running are stopped before that (`control.stop_orphans`), each given
its KillTimeout to publish its final record: ended from the record before, the session would
leave out what they did after it."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines.local.target import Target

#: What stops `pipeline run` while it starts: as Ctrl-C does (SIGINT), SIGTERM and a closed
#: terminal (SIGHUP) stop the start; once the supervisor runs, it handles them itself.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class Session:
    """One `pipeline run` (or reprocess) working in a run: ends it in the record."""

    store: Any
    transport: Any
    run: Any
    what: str
    env_name: str
    #: the tasks of a lost run stopped before the session began (`control.Orphans.record`):
    #: its supervisor says it (`ExecOptions.stopped_orphans`)
    stopped_orphans: dict[str, Any] | None = None
    #: the signal handlers `stop_start_on_signals` replaced, put back when the session ends
    previous_handlers: dict[int, Any] | None = None
    ended: bool = False

    def announce(self, *, err: bool) -> None:
        """Say which run this is (`deployments.announce`), once it began: at once in the
        foreground, where the live table follows; after the supervisor started with
        `--detach`, whose start can still fail (the machine's limits, a unit's command not
        found), and then resumed nothing."""
        from asapo_pipelines.cli.deployments import announce

        announce(self.run, self.what, self.store.pipeline, err=err)

    @property
    def label(self) -> str:
        """The session its workers name in their status records (`worker.status.in_session`)."""
        from asapo_pipelines.runs.lifecycle import current_session

        return current_session(self.run)

    def finish(self, result: Any, counters: dict[str, Any], payload: dict[str, Any]) -> None:
        """End the session with its workers' last status records of this session: a replica
        whose last record is of an earlier session, or of another run, did not publish in
        this one, and the counts that record holds are recorded already (or another run's)."""
        from asapo_pipelines.runs.lifecycle import summaries_of
        from asapo_pipelines.worker.status import in_session

        label = self.label
        ours = {k: r for k, r in counters.items() if in_session(r, label)}
        groups = {g["Name"] for g in payload["Job"]["TaskGroups"]}
        summaries, counts = summaries_of(ours, groups)
        message = result.message + counts_note(ours, groups) + silent_note(payload, ours)
        self._end(result.status, message, summaries, counts)

    def abort(self, state: str, message: str) -> None:
        """End the run when the session did not get to run the job to its end (`pipeline
        run` stopped by a signal while starting, or its supervisor could not go on): `state`
        is `stopped` or `failed`, `message` the sentence that said why. Nothing when the
        session is already ended."""
        self._end(state, message, {}, {})

    def _end(
        self, state: str, message: str, summaries: dict[str, Any], counts: dict[str, Any]
    ) -> None:
        if self.ended:
            return
        self.ended = True
        try:
            # a second Ctrl-C or a SIGTERM now must not cut the record in half: it takes
            # effect once the record is written
            with _signals_held():
                self.store.end(self.run, state, message, summaries, counts)
        finally:
            self.transport.close()
            for signum, handler in (self.previous_handlers or {}).items():
                signal.signal(signum, handler)
            self.previous_handlers = None


def counts_note(counters: dict[str, Any] | None, groups: set[str] | None = None) -> str:
    """A clause for the run's message naming the replicas whose counts stop at a status record
    before their final one (it did not reach the transport, or the process was killed): their
    counts may be below what they did. Empty when every replica's final record is there."""
    from asapo_pipelines.worker.status import not_final

    records = [
        r
        for r in (counters or {}).values()
        if groups is None or str(r.get("instance") or "") in groups
    ]
    short = not_final(records)
    if not short:
        return ""
    return (
        f"; the counts of {', '.join(short)} are from {'its' if len(short) == 1 else 'their'} "
        "last status record that reached the store, not a final one, and may be lower than "
        "what was processed"
    )


def silent_note(payload: dict[str, Any], counters: dict[str, Any]) -> str:
    """A clause for the run's message naming the replicas that published no status record in
    the session (stopped before they started, say): none of their work is counted in it.
    Empty when each published one."""
    silent = [
        group["Name"] if index == 0 else f"{group['Name']}[{index}]"
        for group in payload["Job"]["TaskGroups"]
        for index in range(int(group.get("Count", 1)))
        if f"{group['Name']}[{index}]" not in counters
    ]
    if not silent:
        return ""
    their = "its" if len(silent) == 1 else "their"
    return (
        f"; {', '.join(silent)} published no status record in this session, so none of "
        f"{their} work is counted in it"
    )


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held back (delivered when the block ends)."""
    held = {signal.SIGINT, *STOP_SIGNALS}
    before = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_start_on_signals(session: Session) -> None:
    """From here until the supervisor installs its own handlers (and after it puts these back),
    SIGTERM and SIGHUP stop `pipeline run` as Ctrl-C does (`aborted.`, exit 130) instead of
    killing it silently with its run recorded `running` for ever; the caller ends the run
    (`Session.abort`). Only in the main thread, where Python runs signal handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    session.previous_handlers = {
        int(signum): signal.signal(signum, _interrupt) for signum in STOP_SIGNALS
    }


def end_if_left(session: Session, run_dir: Path) -> None:
    """When `pipeline run` ends on an exception without having ended its session (a signal
    while it started, an error of its supervisor such as a run directory deleted under it, a
    closed output pipe), end the run `stopped` or `failed` with the sentence the command says,
    instead of leaving it `running` for ever. Called when the command's click context closes,
    while that exception is still on its way out. A session a detached supervisor took over
    (it holds the run directory) is that supervisor's to end."""
    import sys

    from asapo_pipelines.local.control import supervisor_alive

    error = sys.exc_info()[1]
    if session.ended or error is None or supervisor_alive(run_dir):
        return
    if isinstance(error, KeyboardInterrupt | click.Abort):
        why = str(error.args[0]) if error.args else "SIGINT"
        state, message = "stopped", f"pipeline run was stopped ({why})"
    elif isinstance(error, BrokenPipeError):
        # printed outside the run's live view (which stops the run itself): the same reason
        from asapo_pipelines.cli.output import OUTPUT_CLOSED

        state, message = "stopped", f"pipeline run was stopped ({OUTPUT_CLOSED})"
    elif isinstance(error, PipelinesError):
        state, message = "failed", error.message
    else:
        state, message = "failed", f"pipeline run ended on {type(error).__name__}: {error}"
    try:
        session.abort(state, message)
    except Exception as exc:  # the command's own error is what the user must see
        import logging

        logging.getLogger("asapo_pipelines.runs").warning(
            "could not record the end of run %s: %s", session.run.id, exc
        )


def lost_run_dir(store: Any, target: Target) -> Path | None:
    """The run directory of the latest run's last session when it is not `target`'s and that
    session was never ended: started with another `--data-dir`, its supervisor may have been
    lost with its workers still running there (`control.stop_orphans_elsewhere` tells, under
    that directory's lock). None for a session of a cluster's executor or of workers started
    by hand, which are not ours to stop."""
    latest = store.latest(resumable=True)
    if latest is None or latest.state != "running":
        return None
    session = latest.session
    if session.get("executor", "local") != "local" or session.get("mode") == "workers":
        return None
    recorded = session.get("run_dir")
    if not recorded or Path(recorded).resolve() == Path(target.run_dir).resolve():
        return None
    return Path(recorded)


def end_lost_session(store: Any, target: Target, *, stopped: bool = False) -> None:
    """End the latest run's last session, as `lost`, when its supervisor is gone without
    having ended it, with the counts its workers published last (see the module's docstring);
    as its state file says when the supervisor recorded its end there but not in the store (a
    full disk holding both). `stopped`: the workers it left running were stopped just before
    (`control.stop_orphans`), so that their last records are final ones.

    Called with this run directory's supervisor lock held (`control.refused_while_running`),
    so no supervisor runs here; a session run elsewhere (a cluster's executor, another data
    directory whose supervisor is alive, workers started by hand) is left alone."""
    from asapo_pipelines.local.control import supervisor_alive

    latest = store.latest(resumable=True)
    if latest is None or latest.state != "running":
        return
    session = latest.session
    if session.get("executor", "local") != "local" or session.get("mode") == "workers":
        return  # run by a cluster's executor, or by workers started by hand: not ours to end
    recorded = session.get("run_dir")
    elsewhere = recorded and Path(recorded).resolve() != Path(target.run_dir).resolve()
    if elsewhere and supervisor_alive(Path(recorded)):
        return
    counters = _session_counters(store, target, f"{latest.id}@{session.get('time')}")
    from asapo_pipelines.runs.lifecycle import summaries_of

    groups = {g["Name"] for g in target.payload["Job"]["TaskGroups"]} if target.payload else None
    summaries, counts = summaries_of(counters, groups)
    state, message, at = _recorded_end(Path(recorded or target.run_dir), session)
    short = counts_note(counters, groups)
    if state != "lost":  # the lost sentence says it already
        message += short
    elif stopped and not short and counters:
        message = LOST_STOPPED
    store.end(latest, state, message, summaries, counts, at=at)


#: How a session whose supervisor recorded no end in the store ended, when its state file
#: does not say either.
LOST = (
    "lost",
    "its supervisor was lost (killed, or its machine stopped) before it ended this session; "
    "the counts are its workers' last status records, and may be lower than what they "
    "processed",
)


#: The lost sentence when the workers the supervisor left were stopped by the next start, each
#: publishing its final status record: its counts are whole.
LOST_STOPPED = (
    "its supervisor was lost (killed, or its machine stopped) before it ended this session; "
    "its workers, left running, were stopped by the next start, and the counts are their "
    "final status records"
)


def _recorded_end(run_dir: Path, session: dict[str, Any]) -> tuple[str, str, float]:
    """How the supervisor of `session` ended, and when, as its run directory says
    (`launchplan.rundir.session_end`, which the viewer's run reads too): a supervisor
    stopped by a full disk leaves the run's end there (in the space it reserved) when the
    store, on the same disk, could not take it. `LOST` when it says nothing of this session's
    end, at the run directory's last sign of life (`_last_sign_of_life`): the end is recorded
    by the next start, whose own time would hide when the session really ended."""
    from asapo_pipelines.launchplan.rundir import recorded_state, session_end

    state = recorded_state(run_dir)
    began = float(session.get("time") or 0)
    end = session_end(state, run_dir, began)
    if end is None:
        return (*LOST, max(_last_sign_of_life(run_dir, state), began))
    status, message, at = end
    ended = _last_sign_of_life(run_dir, state) if at is None else at
    return status, message, max(ended, began)


def _last_sign_of_life(run_dir: Path, state: dict[str, Any]) -> float:
    """The last time the run directory shows its supervisor or tasks at work: the state
    file's last update, and the last write to it, to the supervisor's log and to each task's
    logs (a killed supervisor's workers may have gone on a little); now when none is known."""
    import time

    from asapo_pipelines.launchplan.rundir import STATE_FILE
    from asapo_pipelines.local.layout import SUPERVISOR_LOG

    updated = state.get("updated")
    times = [float(updated)] if isinstance(updated, int | float) else []
    paths = [run_dir / STATE_FILE, run_dir / SUPERVISOR_LOG]
    for unit in state.get("units") or []:
        logs = unit.get("logs") if isinstance(unit, dict) else None
        with contextlib.suppress(OSError):
            paths.extend(Path(str(logs)).iterdir() if logs else ())
    for path in paths:
        with contextlib.suppress(OSError):
            times.append(path.stat().st_mtime)
    return min(max(times), time.time()) if times else time.time()


def _session_counters(store: Any, target: Target, session: str) -> dict[str, Any]:
    """Each replica's last status record, when it is one of the session `session`."""
    from asapo_pipelines.worker.status import latest_status, status_consumer

    if target.payload is None or target.pipeline is None:
        return {}
    with status_consumer(store.transport, target.pipeline.name) as consumer:
        records = latest_status(consumer, target.payload)
    return {label: r for label, r in records.items() if r.get("session") == session}


def apply_overrides(
    target: Target, sets: tuple[str, ...], shown: str | None = None
) -> dict[str, dict[str, Any]]:
    """Parse and check `--set`s (a unit or parameter there is not: `UnknownName`, exit 2; the
    rest RunsError, exit 1; nothing written), and apply them; then check the pipeline they
    make as `pipeline validate` checks a file (the plugins' `check_pipeline`, P314), so a
    contradiction between units made with a `--set` is refused before anything starts, not
    found scan by scan in the error stream (PipelineInvalid, exit 1). `shown`: the file as the
    user named it."""
    from asapo_pipelines.errors import UsageError
    from asapo_pipelines.pipeline.validate import check_overridden
    from asapo_pipelines.runs import RunsError
    from asapo_pipelines.runs.overrides import UnknownName, apply, parse

    pipeline, catalog = target.loaded()
    try:
        overrides = parse(sets)
        apply(pipeline, catalog, overrides)
    except UnknownName:
        raise  # a name given wrong, exit 2 as every other one
    except UsageError as exc:
        raise RunsError(exc.message) from None
    check_overridden(pipeline, catalog, shown or str(target.pipeline_file), sets)
    return overrides


def refuse_while_alive_renamed(transport: Any, name: str, target: Target) -> None:
    """Refuse, before anything is recorded, a start of the file while a run of it goes on
    under the name its `pipeline:` had before (`name` is the new one), as a start is refused
    while its run goes on under this name in another data directory (`refuse_while_alive`):
    a second run would read the same folders and write the same results again."""
    from asapo_pipelines.runs.lifecycle import refuse_while_alive
    from asapo_pipelines.runs.renamed import under_old_names

    assert target.pipeline_file is not None
    mine = Path(target.pipeline_file)
    try:
        running = [
            (store, run)
            for store in under_old_names(transport, name, mine)
            for run in store.runs()
            if run.state == "running"
        ]
    except (PipelinesError, NotImplementedError):
        return  # a service that lists no data sources, another name's damaged records
    for store, run in running:
        refuse_while_alive(store, run, mine, target.run_dir)


def start_session(
    target: Target,
    transport: Any,
    *,
    fresh: bool,
    resume: bool,
    overrides: dict[str, dict[str, Any]],
    shown: str | None = None,
) -> Session:
    """Claim the namespace and start or resume the run of the pipeline with its `--set`
    `overrides` applied (`apply_overrides`); one sentence and nothing written or stopped when
    the configuration changed without --fresh or --resume (naming the tasks a lost run left
    running, `shown`: the file as the user named it). Says nothing of the run: the caller
    does, once it began (`Session.announce`).

    `transport`: the pipeline's, opened once for the start (`commands.take_start`); the
    session closes it when it ends.

    Called with the run directory's supervisor lock held (`control.refused_while_running`):
    the tasks a lost supervisor left running are stopped here (`control.stop_orphans`), each
    given the time to publish its final status record, before their session is ended from
    those records (`end_lost_session`)."""
    from asapo_pipelines.local.control import left_running, stop_orphans, stop_orphans_elsewhere
    from asapo_pipelines.local.job import read_job
    from asapo_pipelines.runs import RunsError, RunStore
    from asapo_pipelines.runs.lifecycle import prepare, refuse_changed
    from asapo_pipelines.worker.launch import RUN_ENV

    pipeline, catalog = target.loaded()
    assert target.pipeline_file is not None
    assert target.payload is not None
    store = RunStore(transport, pipeline.name)
    try:
        refuse_while_alive_renamed(transport, pipeline.name, target)
        store.claim(target.pipeline_file)
        # the lost session may have run under another --data-dir: its workers are found there
        other = lost_run_dir(store, target)
        try:
            refuse_changed(store, pipeline, catalog, fresh=fresh, resume=resume)
        except RunsError as exc:
            told = left_running(target.run_dir, shown, data_dir=target.data_dir)
            if other and not told:
                told = left_running(other, shown, elsewhere=True)
            raise RunsError(exc.message + told) from None
        job = read_job(target.payload)
        orphans = stop_orphans(target.run_dir, job)
        orphans = (stop_orphans_elsewhere(other, job) if other else None) or orphans
        end_lost_session(store, target, stopped=orphans is not None)
        run, what = prepare(
            store,
            pipeline,
            catalog,
            Path(target.pipeline_file),
            fresh=fresh,
            resume=resume,
            overrides=overrides,
            run_dir=target.run_dir,
        )
    except BaseException:
        transport.close()
        raise
    session = Session(store, transport, run, what, RUN_ENV)
    session.stopped_orphans = orphans.record() if orphans is not None else None
    stop_start_on_signals(session)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(lambda: end_if_left(session, target.run_dir))
    return session
