"""`pipeline plan`, `deploy`, `start`, `stop`, `status` and `logs`: one path for every executor.

Each command chooses the executor once (`asapo_pipelines.executor.choose_for_command`: the
``--executor`` option, an option that names its executor such as ``--job``, the file's
``deploy:`` section, a local run recorded for the file; `status`, `logs` and `stop` then prefer
what runs: a running deployment before a finished local run, see `_the_live_one`, and the run
directory a running local session recorded, or say that no supervisor runs it, see
`_session_run_dir`), then calls that executor's methods:
what is shown is the executor's own (`Executor.show_status`, `print_logs`...), with a generic
default for a plugin's executor. `status` with no executor at all shows the counters the
pipeline's workers published on its transport. The CLI imports no executor: each is reached
through the catalog, by the import string its plugin registered.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from asapo_pipelines.cli.deployments import (
    FINISHED,
    deployment_run,
    failed_document,
    fresh_option,
    latest_run,
    lost_run,
    resume_option,
    settle,
    stop_again,
    unapplied,
)
from asapo_pipelines.cli.deployments import end as end_run
from asapo_pipelines.cli.options import (
    PipelineFile,
    checked_file,
    data_dir_option,
    file_and_name,
    find_file,
    json_option,
    run_dir_option,
)
from asapo_pipelines.cli.output import warn
from asapo_pipelines.errors import ExecutorUnreachable, PipelinesError, UsageError
from asapo_pipelines.launchplan.rundir import (
    recorded_state,
    start_under_way,
    starting_until,
    supervised_since,
    supervisor_alive,
    unsupervised,
)

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.descriptor import ExecutorDescriptor
    from asapo_pipelines.executor import Executor
    from asapo_pipelines.pipeline.model import Pipeline
    from asapo_pipelines.pipeline.validate import PipelineInvalid
    from asapo_pipelines.runs import Run
    from asapo_pipelines.transport import Transport

#: Where `deploy`, `start`, `plan`, `logs` and `stop` go when nothing names an executor (the
#: file has no ``deploy:`` section and no local run): a Nomad cluster, as before executors
#: were plugins. `status` has no default: it then shows the workers' counters alone.
DEFAULT_EXECUTOR = "nomad"

executor_option = click.option(
    "--executor",
    "executor_name",
    metavar="NAME",
    default=None,
    help="The executor to use: one the file's deploy section names, or any installed one "
    "(see `pipeline plugins`).",
)
file_argument = click.argument("file", required=False, type=PipelineFile())
job_option = click.option("--job", "job", metavar="ID", help="A job on the Nomad cluster.")
wait_option = click.option(
    "--wait",
    default=60.0,
    show_default=True,
    help="Seconds to wait for scheduling (the local executor: for the run to start, at least 5).",
)


def _path(file: str | None, given: dict[str, Any]) -> Path | None:
    """The command's file: FILE, else none for a target the options name, else the one
    pipeline file in the current directory."""
    if file and given.get("job"):
        raise UsageError("give either a pipeline file or --job ID, not both")
    if file:  # `logs [FILE] UNIT` reads FILE from its arguments, unchecked by click
        return checked_file(Path(file))
    if given.get("job") or given.get("run_dir"):
        return None
    return find_file("the pipeline file or --job ID" if "job" in given else "the pipeline file")


def _load(path: Path | None) -> tuple[Pipeline | None, Catalog]:
    """The validated pipeline (None for a compiled job, or no file) and the catalog."""
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline import load_pipeline

    catalog = Catalog.load()
    if path is None or path.suffix == ".json":
        return None, catalog
    return load_pipeline(path, catalog), catalog


def executor_for(
    command: str,
    file: str | None,
    name: str | None,
    given: dict[str, Any],
    *,
    default: str | None = DEFAULT_EXECUTOR,
    runs: bool = True,
) -> tuple[Executor | None, Path | None]:
    """The executor `command` goes to, constructed for its target, and the command's file.
    None as executor only when nothing names one and `default` is None."""
    from asapo_pipelines.executor import LOCAL, SELECTING_OPTIONS, choose_for_command

    path = _path(file, given)
    try:
        pipeline, catalog = _load(path)
    except PipelinesError as exc:
        started = _started_from_invalid(command, path, given, exc)
        if started is None:
            raise
        path, given = None, {**given, "run_dir": str(started)}
        pipeline, catalog = _load(None)
    descriptor = choose_for_command(
        pipeline, catalog, path, given, name, default=default, runs=runs
    )
    if descriptor is not None and descriptor.name == default:
        descriptor = _instead_of_default(command, pipeline, catalog, given, name) or descriptor
    plain = runs and name is None and not any(given.get(o) for o in SELECTING_OPTIONS)
    local_given = given
    if plain and pipeline is not None and path is not None:
        elsewhere = _session_run_dir(command, pipeline, catalog, path, given, descriptor)
        if elsewhere is not None:  # started with --data-dir: its run directory is recorded
            local_given = {**given, "run_dir": str(elsewhere)}
            descriptor = choose_for_command(pipeline, catalog, path, local_given, name)
    if descriptor is None:
        return None, path
    executor = _made(descriptor, command, pipeline, catalog, path, local_given)
    if plain and descriptor.name == LOCAL:
        executor = _the_live_one(executor, command, pipeline, catalog, path, given)
    return executor, path


#: Commands that a pipeline file without a ``deploy:`` section sends to the executor its run
#: records name, the local one when they name none, never to `DEFAULT_EXECUTOR`: a `stop`
#: while `pipeline run --detach` was still loading the file (nothing recorded yet) went to a
#: Nomad agent nobody runs ("cannot reach Nomad"), and the run went on.
NO_DEFAULT_CLUSTER = frozenset({"stop"})


def _instead_of_default(
    command: str,
    pipeline: Pipeline | None,
    catalog: Catalog,
    given: dict[str, Any],
    name: str | None,
) -> ExecutorDescriptor | None:
    """The executor `command` goes to instead of `DEFAULT_EXECUTOR`, which nothing named
    (`NO_DEFAULT_CLUSTER`); None to keep the default."""
    from asapo_pipelines.executor import LOCAL, SELECTING_OPTIONS

    if command not in NO_DEFAULT_CLUSTER or name is not None or pipeline is None:
        return None
    if pipeline.deploy.named() or any(given.get(o) for o in SELECTING_OPTIONS):
        return None
    return catalog.executors.get(_recorded_executor(pipeline, catalog) or LOCAL)


def _recorded_executor(pipeline: Pipeline, catalog: Catalog) -> str | None:
    """The executor of the pipeline's running session as its run records name it (a file
    deployed with `--executor nomad`), None when none runs or the store cannot be read."""
    from asapo_pipelines.cli.deployments import session_executor

    read = _latest_recorded(pipeline, catalog)
    run = read[0] if read is not None else None  # unreachable or damaged: the local one says
    if run is None or run.state != "running":
        return None
    found = session_executor(run)
    return found if found in catalog.executors else None


def _latest_recorded(pipeline: Pipeline, catalog: Catalog) -> tuple[Run | None] | None:
    """The pipeline's latest run record in a tuple (None in it when there is none), read
    without a word; None when the store cannot be read from here."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import open_transport

    try:  # read-only: an embedded store that is not there is read as empty, made by no look
        with open_transport(pipeline.transport.spec(), catalog, read_only=True) as transport:
            return (RunStore(transport, pipeline.name).latest(resumable=True),)
    except (PipelinesError, NotImplementedError):
        return None


def _may_have_deployed(name: str, read: tuple[Run | None] | None) -> bool:
    """Whether executor `name` may have a deployment of the pipeline whose latest run record
    is `read` (`_latest_recorded`): False only when that records the pipeline's last session
    as another executor's (a finished `pipeline run`: `pipeline run` is refused while a
    deployment runs, and a deployment after it records its own session). `status` of a local
    run asked a Nomad agent at 127.0.0.1:4646 that nobody ran, paying its connect time, to
    find no deployment (an outside tester)."""
    from asapo_pipelines.cli.deployments import session_executor

    if read is None or read[0] is None:
        return True  # nothing read: a deployment recorded by nobody here may run
    found = session_executor(read[0])
    return found is None or found == name


#: commands that act on a local run as its supervisor left it, without needing its file valid
_ON_A_RUN = ("status", "logs", "stop")


def _started_from_invalid(
    command: str, path: Path | None, given: dict[str, Any], problem: PipelinesError
) -> Path | None:
    """The run directory of a local run started from FILE when FILE no longer validates (a
    plugin it uses was uninstalled or upgraded, the file was edited): the running job must
    still be seen and stopped. None when there is no such run; the file's problem is then
    the answer."""
    from asapo_pipelines.launchplan.rundir import STATE_FILE, file_run_dir
    from asapo_pipelines.pipeline import DEFAULT_DATA_DIR
    from asapo_pipelines.pipeline.validate import PipelineInvalid

    if command not in _ON_A_RUN or path is None or not isinstance(problem, PipelineInvalid):
        return None
    name = _pipeline_name(path)
    if name is None:
        return None
    data_dir = Path(given.get("data_dir") or path.parent / DEFAULT_DATA_DIR)
    found = file_run_dir(data_dir, name, path)
    if not (found / STATE_FILE).is_file():
        return None
    _say_invalid(path, problem, f"acting on the run started from it in {found}")
    return found


def _say_invalid(path: Path, problem: PipelineInvalid, then: str) -> None:
    """The warning of a command that goes on with a file that does not validate now: its
    first error, and what the command does instead of refusing."""

    first = next((p.text() for p in problem.report.sorted() if p.severity == "error"), "")
    warn(f"{path} does not validate now ({first}); {then}")


def load_for_records(path: Path, then: str) -> tuple[Pipeline, Catalog]:
    """FILE's pipeline for a command that reads what its runs left on its transport (`runs`,
    `tail`): validated when it validates. When it does not now (a plugin it uses was upgraded
    and renamed a unit's param, or uninstalled), what ran and its results must stay readable
    before the file is fixed, and they need only its shape (name, transport, streams, ports):
    that, with a warning saying `then`. A file whose shape does not read is its problems."""
    from asapo_pipelines.pipeline.validate import PipelineInvalid
    from asapo_pipelines.worker.launch import load

    # a missing FILE is the sentence every command says, with its "did you mean" (the
    # worker's own `load` names no neighbour: it runs a copy of the file elsewhere)
    checked_file(path)
    try:
        return load(path)
    except PipelineInvalid as exc:
        shaped = _shape_only(path)
        if shaped is None:
            raise
        _say_invalid(path, exc, then)
        return shaped


def say_whose_runs(
    transport: Transport, name: str, path: Path, shown: str = "runs", *, refuse: bool = False
) -> None:
    """A copy of a pipeline file that keeps its `pipeline:` name reads, in the same store, the
    runs of the file that owns the name (`pipeline run` refuses the copy, `RunStore.claim`):
    a command reading them through the copy says so in one warning line, saying what it shows
    (`shown`), rather than pass them off as the copy's; one that would drop them (`refuse`:
    `pipeline prune`) refuses with `run`'s sentence. Nothing for the owner, or no owner yet."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.runs.store import RunsError

    store = RunStore(transport, name)
    owner = store.other_owner(path)
    if owner is None:
        return
    if refuse:
        raise RunsError(store.refusal(owner, path))
    if not Path(owner).exists():
        # most often this very file renamed or moved while its run went on: its old name
        # keeps the runs, a new `pipeline:` name would start over
        mine = path.resolve()
        warn(
            f"{store.belongs_to(owner)}, which no longer exists here: the {shown} shown are "
            f"its; if {mine.name} is that file renamed or moved, `mv {shlex.quote(str(mine))} "
            f"{shlex.quote(owner)}` gives it back its runs"
        )
        return
    warn(
        f"{store.belongs_to(owner)}: the {shown} shown are its, not {path}'s (rename "
        f"`pipeline:` in {path} to run it)"
    )


def _shape_only(path: Path) -> tuple[Pipeline, Catalog] | None:
    """FILE as the shape stage of validation reads it (units' params and wiring unchecked),
    or None when even that fails: not YAML, not a mapping, no transport the catalog knows."""
    from pydantic import ValidationError

    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.checks import validate_as_json
    from asapo_pipelines.pipeline.loader import LoadFailed, read_document
    from asapo_pipelines.pipeline.model import pipeline_model

    try:
        document, problems = read_document(path)
    except LoadFailed:
        return None
    data = document.data
    if any(p.severity == "error" for p in problems) or not isinstance(data, dict):
        return None
    catalog = Catalog.load()
    # `x-...` keys hold YAML anchors, not part of the model (as validation drops them)
    data = {k: v for k, v in data.items() if not str(k).startswith("x-")}
    try:
        pipeline = validate_as_json(pipeline_model(catalog), data)
    except ValidationError:
        return None
    return pipeline.bind(path), catalog


def _pipeline_name(path: Path) -> str | None:
    """The `pipeline:` name a file gives, read without validating it."""
    from ruamel.yaml import YAML, YAMLError

    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YAMLError):
        return None
    name = doc.get("pipeline") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else None


def _made(
    descriptor: ExecutorDescriptor,
    command: str,
    pipeline: Pipeline | None,
    catalog: Catalog,
    path: Path | None,
    given: dict[str, Any],
) -> Executor:
    from asapo_pipelines.executor import executor_class

    cls = executor_class(descriptor)
    cls.check_options(f"pipeline {command}", given)
    return cls.for_command(pipeline, catalog, path, given)


def _local_run_dir(
    pipeline: Pipeline, catalog: Catalog, path: Path, given: dict[str, Any]
) -> Path | None:
    """The run directory the local executor (reached through the catalog, as every executor)
    keeps FILE's runs in, or None without a local executor."""
    from asapo_pipelines.executor import LOCAL, executor_class

    descriptor = catalog.executors.get(LOCAL)
    if descriptor is None:
        return None
    # only the option that moves it: the others may be another executor's (`logs --plain`)
    where = {"data_dir": given.get("data_dir")}
    local = executor_class(descriptor).for_command(pipeline, catalog, path, where)
    found = getattr(local, "run_dir", None)
    return None if found is None else Path(found)


class UnsupervisedRun(PipelinesError):
    """FILE's run is recorded as running in a session of `pipeline run` that no supervisor
    runs (`_session_run_dir`); `stop` ends it."""

    def __init__(self, message: str, run_id: str, pipeline: str, path: Path) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.pipeline = pipeline
        self.path = path


class EndedHere(UsageError):
    """FILE's last run was a local one that ended without leaving a local run recorded here
    (its `pipeline run` stopped before it started a supervisor, or its run directory was
    deleted); `stop` has nothing to do. `reason` is why it ended, as its record says."""

    def __init__(
        self, message: str, run_id: str, pipeline: str, state: str, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.pipeline = pipeline
        self.state = state
        self.reason = reason


def _session_run_dir(
    command: str,
    pipeline: Pipeline,
    catalog: Catalog,
    path: Path,
    given: dict[str, Any],
    chosen: ExecutorDescriptor | None,
) -> Path | None:
    """What the run records say when no local run of FILE is recorded in its run directory
    and its last run was one of `pipeline run` (a local run is never handed to a cluster; a
    deployment of the file that runs goes first, as in `_the_live_one`):

    - running, and a supervisor took the run directory its session recorded (`pipeline run
      --data-dir`): that directory, so `status`, `logs` and `stop` find it without --data-dir;
    - running, and no supervisor ever took it (its `pipeline run` was killed or crashed
      first): `UnsupervisedRun`, which `stop` ends;
    - ended, when the command would otherwise go to `chosen`, another executor: `EndedHere`.
    """
    from asapo_pipelines.cli.deployments import latest_local_run
    from asapo_pipelines.executor import LOCAL

    run_dir = _local_run_dir(pipeline, catalog, path, given)
    if run_dir is None or not _idle(run_dir):
        return None  # a supervisor runs it, or was lost with its tasks: the local one says so
    run = latest_local_run(pipeline, catalog, path)
    if run is None or run.state != "running":
        # `pipeline:` renamed while the run goes on: its record, and so its run directory,
        # is under the old name
        run = _renamed_local_run(pipeline, catalog, path) or run
    if command == "logs" and recorded_state(run_dir):
        # the last session's logs are what to read after a start that went wrong; but when
        # the latest run was started with --data-dir, its logs, as `status` shows its table
        session_dir = Path(run.session.get("run_dir") or run_dir) if run else run_dir
        moved = session_dir != run_dir and not given.get("data_dir")
        return session_dir if moved and recorded_state(session_dir) else None
    if run is None:
        return None
    session_dir = Path(run.session.get("run_dir") or run_dir)
    if run.state != "running" and (chosen is None or chosen.name == LOCAL):
        # an ended run started with --data-dir: its own run directory tells how it ended
        moved = session_dir != run_dir and not given.get("data_dir")
        if recorded_state(session_dir) or run.state != "failed" or _end_reason(run) is None:
            return session_dir if moved and recorded_state(session_dir) else None
        # a failed run whose run directory is gone (deleted under it): its record says why,
        # where `status` showed the counters alone, the failure nowhere, and `stop` said no
        # run was ever recorded. A run that completed or was stopped is told by its counters.
    host = run.session.get("host")
    here = host in (None, socket.gethostname())  # another host's supervisor is not seen here
    if run.state != "running":
        if recorded_state(session_dir):
            return session_dir if session_dir != run_dir and not given.get("data_dir") else None
    elif here and not _unsupervised_since(session_dir, float(run.session.get("time") or 0)):
        moved = session_dir != run_dir and not given.get("data_dir")
        return session_dir if moved else None
    if any(_is_live(e) for e in _deployments(command, pipeline, catalog, path, given)):
        return None
    if run.state != "running":
        reason = _end_reason(run)
        raise EndedHere(
            f"no local run of {path} is recorded here: its last run, {run.id}, ended "
            f"{run.state}{f': {reason}' if reason else ' before a supervisor started it'}; "
            "start one with `pipeline run`",
            run.id,
            pipeline.name,
            run.state,
            reason,
        )
    if not here:
        raise PipelinesError(
            f"run {run.id} of pipeline {pipeline.name} runs on host {host}, not here; ask "
            f"there with `pipeline {command} {path}`"
        )
    raise UnsupervisedRun(
        unsupervised(run.id, pipeline.name, path),  # the viewer's run says it too
        run.id,
        pipeline.name,
        path,
    )


def _renamed_local_run(pipeline: Pipeline, catalog: Catalog, path: Path) -> Run | None:
    """FILE's run of `pipeline run` that is recorded as running under a name its `pipeline:`
    had before (`runs.renamed.under_old_names`), None when there is none or the store cannot
    be read: as `latest_local_run` finds the run under the file's name now."""
    from asapo_pipelines.cli.deployments import session_executor
    from asapo_pipelines.executor import LOCAL
    from asapo_pipelines.runs.renamed import under_old_names
    from asapo_pipelines.transport import open_transport

    mine = str(path.resolve())
    try:  # read-only: an embedded store that is not there is read as empty, made by no look
        with open_transport(pipeline.transport.spec(), catalog, read_only=True) as transport:
            for store in under_old_names(transport, pipeline.name, path):
                run = store.latest(resumable=True)
                if run is None or run.state != "running" or session_executor(run) != LOCAL:
                    continue
                if run.start.get("file") == mine:
                    return run
    except (PipelinesError, NotImplementedError):
        return None
    return None


def _end_reason(run: Run) -> str | None:
    """Why the run ended as its record says it (the supervisor records why: a run directory
    deleted under it, a full disk), None when the record says no more than its state. The
    record is the truth: no run directory state left here does not mean no supervisor ran."""
    why = str((run.last_end or {}).get("message") or "")
    return why.removeprefix(f"{run.state}: ") or None  # said once: "ended stopped: ..."


def _idle(run_dir: Path) -> bool:
    """Whether no supervisor runs in `run_dir` and none was lost there with its tasks: no
    state recorded, or one that ended."""
    if supervisor_alive(run_dir) or start_under_way(run_dir):
        return False  # the local executor waits for a start under way (`wait_for_start`)
    status = recorded_state(run_dir).get("status")
    return status is None or status in ENDED


def _unsupervised_since(run_dir: Path, began: float) -> bool:
    """Whether no supervisor took `run_dir` after `began` (a `pipeline run` session's record),
    waiting while one may still be starting (`rundir.starting_until`)."""
    while not supervised_since(run_dir, began):
        if time.time() >= starting_until(run_dir, began):
            return True
        time.sleep(0.1)
    return False


#: The states in which an executor reports that nothing of a run or deployment runs any more:
#: those it ended in by itself, or stopped (Nomad says `dead` of a job whose allocations all
#: ended).
ENDED = frozenset({*FINISHED, "stopped", "dead"})


def _the_live_one(
    local: Executor,
    command: str,
    pipeline: Pipeline | None,
    catalog: Catalog,
    path: Path | None,
    given: dict[str, Any],
) -> Executor:
    """`status`, `logs` and `stop` act on what runs: a local run recorded here goes first only
    while it runs, or when no deployment of the file (by the executors its ``deploy:`` section
    names) runs either. A finished `pipeline run` must not hide a live Slurm deployment, whose
    jobs `stop` would leave running; when both run, the user says which."""
    from asapo_pipelines.executor import LOCAL

    live = [e for e in _deployments(command, pipeline, catalog, path, given) if _is_live(e)]
    if not live:
        return local
    local_live = _is_live(local)
    if not local_live and len(live) == 1:
        return live[0]
    names = ([LOCAL] if local_live else []) + [e.name for e in live]
    what = " and ".join("a local run" if n == LOCAL else f"a {n} deployment" for n in names)
    name = pipeline.name if pipeline is not None else str(path)
    raise UsageError(
        f"pipeline {name} has {what} running; choose one with "
        + " or ".join(f"--executor {n}" for n in names)
    )


def _deployments(
    command: str,
    pipeline: Pipeline | None,
    catalog: Catalog,
    path: Path | None,
    given: dict[str, Any],
) -> list[Executor]:
    """An executor for each other one the file's ``deploy:`` section names; one that does not
    take the command's options (``--data-dir`` means a local run) is left out."""
    from asapo_pipelines.executor import LOCAL

    if pipeline is None:
        return []
    named = [n for n in pipeline.deploy.named() if n != LOCAL and n in catalog.executors]
    # the store is read once for all of them, and not at all for a file naming none
    read = _latest_recorded(pipeline, catalog) if named else None
    found = []
    for name in named:
        if not _may_have_deployed(name, read):
            continue
        descriptor = catalog.executors[name]
        try:
            found.append(_made(descriptor, command, pipeline, catalog, path, given))
        except UsageError:
            continue
    return found


def _is_live(executor: Executor) -> bool:
    """Whether the executor reports something of the target running (or pending, or lost
    with tasks that may run: `stop` cleans those up); False when it knows no such target."""
    from asapo_pipelines.errors import PipelinesError

    try:
        return executor.status().state not in ENDED
    except PipelinesError:
        return False


def _pipeline_file(path: Path | None) -> str | None:
    """`path` when it is a pipeline file whose deployments are recorded as runs."""
    return str(path) if path is not None and path.suffix != ".json" else None


def _end_unsupervised(exc: UnsupervisedRun, *, as_json: bool) -> None:
    """`pipeline stop` of a run no supervisor runs: there is nothing to signal, so its record
    ends (`pipeline prune` and the next `pipeline run` then take it as ended)."""
    from asapo_pipelines.cli.output import print_json
    from asapo_pipelines.executor import LOCAL

    why = "no supervisor ran it: its `pipeline run` ended before starting one"
    ended = end_run(str(exc.path), LOCAL, "stopped", f"stopped: {why}")
    if ended is None:  # ended meanwhile, or the store is out of reach: said by `end`
        raise PipelinesError(f"run {exc.run_id} was not ended: its record could not be written")
    if as_json:
        print_json({"run": ended, "status": "stopped", "message": f"stopped: {why}"})
    else:
        click.echo(f"run {ended} of pipeline {exc.pipeline} ended as stopped: {why}")


def _say_ended(exc: EndedHere, *, as_json: bool) -> None:
    from asapo_pipelines.cli.output import print_json

    if as_json:
        print_json(
            {"run": exc.run_id, "status": exc.state, "was_running": False, "message": exc.reason}
        )
    elif exc.reason:
        ended = f"it ended {exc.state}: {exc.reason}"
        click.echo(f"run {exc.run_id} of pipeline {exc.pipeline} is not running: {ended}")
    else:
        click.echo(f"run {exc.run_id} of pipeline {exc.pipeline} is not running ({exc.state})")


@click.command()
@file_argument
@json_option
@executor_option
def plan(file: str | None, as_json: bool, executor_name: str | None) -> None:
    """Show what FILE's executor would submit: for Nomad (the default) the compiled job and
    what would change on the cluster."""
    executor, _ = executor_for("plan", file, executor_name, {}, runs=False)
    assert executor is not None
    executor.show_plan(as_json=as_json)


@click.command()
@file_argument
@wait_option
@fresh_option
@resume_option
@json_option
@executor_option
def deploy(
    file: str | None,
    wait: float,
    fresh: bool,
    resume: bool,
    as_json: bool,
    executor_name: str | None,
) -> None:
    """Deploy FILE with its executor: register its job on Nomad (the default) and report
    whether it could be placed, or hand it to the executor its deploy section names. A
    pipeline file's deployment is a run (see `pipeline runs`): a changed configuration is
    refused before anything is submitted unless --fresh or --resume says what to do."""
    executor, path = executor_for("deploy", file, executor_name, {}, runs=False)
    assert executor is not None
    shown = str(path) if path is not None else None
    with (
        failed_document(as_json=as_json),
        deployment_run(
            shown, executor, "deploy", fresh=fresh, resume=resume, quiet_stdout=as_json
        ) as submission,
    ):
        executor.run_id = submission.run_id
        result = submission.judge(executor.deploy(wait=wait))
    executor.show_submitted(result, as_json=as_json, start=False)


@click.command()
@file_argument
@job_option
@wait_option
@json_option
@executor_option
def start(
    file: str | None, job: str | None, wait: float, as_json: bool, executor_name: str | None
) -> None:
    """Run a stopped pipeline job again: the job as deployed, in its run (a new session)."""
    executor, path = executor_for("start", file, executor_name, {"job": job}, runs=False)
    assert executor is not None
    recorded = _pipeline_file(path)
    with (
        failed_document(as_json=as_json),
        deployment_run(
            recorded, executor, "start", restart=True, quiet_stdout=as_json
        ) as submission,
    ):
        result = submission.judge(executor.start(wait=wait))
    executor.show_submitted(result, as_json=as_json, start=True)


@click.command()
@file_argument
@job_option
@click.option("--purge", is_flag=True, help="Also forget the deployment (Nomad: remove the job).")
@executor_option
@run_dir_option
@data_dir_option
@json_option
def stop(
    file: str | None,
    job: str | None,
    executor_name: str | None,
    purge: bool,
    run_dir: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Stop a local run cleanly (its tasks get their kill signal), the Nomad job, or the
    tasks of the executor the file's deploy section names; a deployment's run ends."""
    given = {"job": job, "run_dir": run_dir, "data_dir": data_dir}
    try:
        executor, path = executor_for("stop", file, executor_name, given)
    except UnsupervisedRun as exc:
        _end_unsupervised(exc, as_json=as_json)
        return
    except EndedHere as exc:  # nothing to stop, as of a local run that ended
        _say_ended(exc, as_json=as_json)
        return
    assert executor is not None
    asked_for = executor_name or any(given.values())
    with _no_local_run(executor, path, asked_for, as_json, "stop"):
        _stop(executor, path, executor_name, purge=purge, as_json=as_json)


def _stop(
    executor: Executor, path: Path | None, named: str | None, *, purge: bool, as_json: bool
) -> None:
    recorded = _pipeline_file(path)
    # asked before the jobs stop: a purged deployment keeps no run to read back. Its jobs are
    # stopped all the same (what the operator asked), but there is no run to end: opening
    # the store to end it would make an emptied one again
    lost = lost_run(recorded, executor, so=", so no end was recorded")
    # one warning, the same each time, when the transport cannot be reached
    again = stop_again(recorded)
    # a deployment that already ended on its own ends its run as it ended, not as `stopped`
    if lost is None:
        settle(executor, recorded, then=again)
    with _hinting(executor, path, named):
        result = executor.stop(purge=purge)
    # and one the stop found ended on its own (its last workers ended while nobody looked:
    # a Slurm watcher, stopped first, had not seen them) ends as it ended too
    if not purge and lost is None:  # a purged deployment has no state left to ask
        settle(executor, recorded, then=again)
    if recorded is not None and lost is None:
        end_run(
            recorded,
            executor.name,
            "stopped",
            executor.describe("stopped", result),
            stopped=True,
            # when its jobs ended, if the executor says (`ended_at`): a stop repeated once the
            # transport is back records the first stop's time
            at=result.get("ended_at"),
            then=again,
        )
    executor.show_stop(result, as_json=as_json)
    if lost is not None:
        warn(lost)


@click.command()
@file_argument
@job_option
@executor_option
@run_dir_option
@data_dir_option
@json_option
@click.pass_context
def status(
    ctx: click.Context,
    file: str | None,
    job: str | None,
    executor_name: str | None,
    run_dir: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Show the units of a local run (state, pid, restarts, exit codes), the Nomad job, or the
    tasks of the executor the file's deploy section names, with the counters the pipeline's
    workers published; with none of these, the counters alone.

    \b
    Exit status, the same with --json (for scripts and control systems that poll it):
      0  the run goes on, or it ended complete or stopped
      1  the run failed, or it is lost: its `pipeline run` supervisor died without ending
         it (`pipeline stop FILE` stops what it left running), or the store no longer holds
         the run of a deployment; 1 too when the status cannot be read (the reason on stderr)
      2  no run of FILE is recorded, or the command was called wrongly
    """
    given = {"job": job, "run_dir": run_dir, "data_dir": data_dir}
    asked = _path(file, given)
    # a copy that keeps the owner's `pipeline:` name shows the owner's counters (said below):
    # its run is the owner's too, wherever the copy's `deploy:` section points
    owner = None if executor_name or any(given.values()) else _owner_file(asked)
    target = str(owner or asked) if (owner or asked) else None
    executor, path = executor_for("status", target, executor_name, given, default=None)
    _say_whose_status(executor, asked if owner else path)
    if executor is not None:
        # before the table, whose counters then start from nothing: the store lost the run
        lost = lost_run(_pipeline_file(path), executor)
        if lost is not None:
            warn(lost)
        else:  # a deployment found ended on its own ends its run (the Slurm watcher asks so)
            settle(executor, _pipeline_file(path))
        if not owner:
            _say_deployed_edit(executor, path)
        asked_for = executor_name or any(given.values())
        with (
            _hinting(executor, path, executor_name),
            _no_local_run(executor, path, asked_for, as_json),
        ):
            code = executor.show_status(as_json=as_json)
        if lost is not None:  # whatever its jobs do, their run is gone: an operator must act
            from asapo_pipelines.executor import status_exit_code

            code = code or status_exit_code("lost")
        if not owner:
            _say_under_table(executor, path, as_json=as_json)
        if executor.pipeline is not None and path is not None:
            from asapo_pipelines.counters import check_readable

            # a table of `-` said nothing of a transport that cannot be read from here (the
            # pipeline as loaded for the table: loaded again, it cost ~45 ms of CPU time)
            check_readable(path, (executor.pipeline, executor.catalog))
        ctx.exit(code)
    if path is None or path.suffix == ".json":
        _say_no_run(f"no local run of {file} is recorded; start one with `pipeline run`", as_json)
    # no executor knows the pipeline's tasks: the counters its workers (started by hand or by
    # a scheduler) published on its transport
    from asapo_pipelines.counters import show_counters

    show_counters(path, as_json)


def _say_no_run(message: str, as_json: bool) -> NoReturn:
    """`status` of no run recorded: `message`, exit code 2."""
    if as_json:
        # a tool reads stdout as one document whether or not a run exists; the sentence
        # and the exit code stay those of `status` without --json
        from asapo_pipelines.cli.output import print_json

        print_json({"job": None, "status": "not started", "message": message, "units": []})
    raise UsageError(message)


@contextlib.contextmanager
def _no_local_run(
    executor: Executor, path: Path | None, asked_for: Any, as_json: bool, command: str = "status"
) -> Iterator[None]:
    """`status`, `logs` or `stop` of FILE with no local run recorded go to the executor
    FILE's ``deploy:`` section names; when that cannot be asked and no deployment of FILE is
    recorded either, both are said, exit code 2 (no run of FILE recorded). The shipped
    example, and every file `pipeline new` writes, said only "cannot reach Nomad", exit 1, to
    a beamline user who never used Nomad (outside testers). Only an executor that could not
    be asked (`ExecutorUnreachable`): what it answered (a deployment under the file's old
    name, a plugin executor that raised) is said as is, as is any error when a deployment
    is recorded in the store."""
    from asapo_pipelines.executor import LOCAL

    try:
        yield
    except ExecutorUnreachable as exc:
        pipeline = executor.pipeline
        if executor.name == LOCAL or asked_for or pipeline is None or path is None:
            raise
        read = _latest_recorded(pipeline, executor.catalog)
        if read is None or read[0] is not None:  # a run is recorded, or nothing could be read
            raise
        then = "nothing to stop" if command == "stop" else f"start one with `pipeline run {path}`"
        message = (
            f"no local run of {path} is recorded; {then}; and the {executor.name} executor its "
            f"deploy section names could not be asked about a deployment of it: {exc.message}"
        )
        if command == "status":
            _say_no_run(message, as_json)
        raise UsageError(message) from None


@contextlib.contextmanager
def _hinting(executor: Executor, path: Path | None, named: str | None) -> Iterator[None]:
    """A failure of `status`, `logs` or `stop` with the executor the file's ``deploy:``
    section names, while another executor has a deployment of the file recorded on this
    machine (`Executor.has_run`), says so: deployed with ``--executor slurm``, the shipped
    example's `status` answered only "cannot reach Nomad" (an outside tester)."""
    try:
        yield
    except PipelinesError as exc:
        other = None if named or path is None else _recorded_elsewhere(executor, path)
        if other is not None and path is not None:
            exc.message = (
                f"{exc.message}; a {other} deployment of {path.name} is recorded here: "
                f"add `--executor {other}`"
            )
        raise


def _recorded_elsewhere(executor: Executor, path: Path) -> str | None:
    """Another installed executor (not the local one, which the commands ask first) that has
    a deployment of `path` recorded on this machine; None when none has."""
    from asapo_pipelines.executor import LOCAL, executor_class

    for descriptor in executor.catalog.executors.values():
        if descriptor.name in (LOCAL, executor.name):
            continue
        try:
            if executor_class(descriptor).has_run(executor.pipeline, path, {}):
                return descriptor.name
        except PipelinesError:  # a broken executor plugin: not the answer to this failure
            continue
    return None


def _say_under_table(executor: Executor, path: Path | None, *, as_json: bool) -> None:
    """What `status` says under a run's table, from the state `show_status` read and one
    opening of the store: while a local run goes on, that FILE was edited (`_say_edited`);
    once its session ended, the units whose results are of earlier settings
    (`_say_unapplied`). Each asked the run's state and opened the store on its own, and
    loaded the pipeline and the catalog again (a remote transport: a connect each time)."""
    from asapo_pipelines.executor import LOCAL

    recorded = _pipeline_file(path)
    if recorded is None or path is None:
        return
    state = executor.shown_state or executor.status().state
    if executor.name == LOCAL and state == "running":
        # a local session going on has no end to read yet; its store is left alone meanwhile
        _say_edited(executor, path)
        return
    if executor.shown_run is not None:  # the latest run, read with the table
        _say_unapplied(recorded, executor.shown_run[0], as_json=as_json)
        return
    pipeline, catalog = executor.pipeline, executor.catalog
    if pipeline is None:
        from asapo_pipelines.worker.launch import load

        pipeline, catalog = load(path)
    _say_unapplied(recorded, latest_run(pipeline, catalog), as_json=as_json)


def _say_deployed_edit(executor: Executor, path: Path | None) -> None:
    """Before a deployment's table: a warning when FILE says otherwise than the copy its
    workers run (`edited_since_deployed`), as `_say_edited` says it of a local run. An edited
    transport is read by the counters: they are then not the deployment's (every unit showed
    `not started` beside Slurm's `running`, an outside tester). Its advice is for what the
    deployment does: one that ended has nothing to stop."""
    from asapo_pipelines.cli.deployments import edited_since_deployed
    from asapo_pipelines.errors import PipelinesError

    recorded = _pipeline_file(path)
    if recorded is None:
        return
    try:
        change = edited_since_deployed(recorded, executor)
    except PipelinesError:  # nothing deployed: the table says so
        return
    if not change:
        return
    where = shlex.quote(recorded)
    counters = (
        "; the counters below are read through the edited transport, not the deployment's"
        if change.touches("transport")
        else ""
    )
    if _is_live(executor):
        advice = (
            f"its jobs run the copy deployed: `pipeline stop {where}` and `pipeline deploy "
            f"--resume {where}` apply the edit"
        )
    else:  # nothing runs to stop (it told to stop an ended deployment), and `start` refuses
        advice = (
            "the deployment has ended, and `pipeline start` would run the copy deployed: "
            f"`pipeline deploy --resume {where}` runs the edited file"
        )
    warn(f"{recorded} was edited after it was deployed: {change}; {advice}{counters}")


def _say_unapplied(recorded: str, run: Run | None, *, as_json: bool) -> None:
    """Under a run's table, once its session ended: a unit whose results are still those of
    earlier settings, as `pipeline run` says it when its session ends. A local run too: a
    detached one ends with nobody in the foreground, and a foreground one's line has scrolled
    away by the time its status is asked (an outside tester saw the old decision and no word
    of the new target)."""
    told = unapplied(recorded, run)
    if told:
        click.echo(f"warning: {told}", err=as_json)


def _say_edited(executor: Executor, path: Path) -> None:
    """A warning when FILE, whose local run goes on, was edited (`runs.edits`, which the
    viewer's page asks too)."""
    from asapo_pipelines.runs.edits import edit_warning

    pipeline = executor.pipeline
    if pipeline is None:
        return
    if executor.shown_run is not None:  # the current run, read with the table
        run = executor.shown_run[0]
    else:
        run = _current_run(pipeline, executor.catalog)
    told = edit_warning(run, path, pipeline.transport.spec()) if run is not None else None
    if told:
        warn(told)


def _current_run(pipeline: Pipeline, catalog: Catalog) -> Run | None:
    """The pipeline's current run record (`RunStore.current`); None when the store cannot be
    read from here (nothing said: the table said what it could)."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import TransportError, open_transport

    try:
        with open_transport(pipeline.transport.spec(), catalog, read_only=True) as transport:
            return RunStore(transport, pipeline.name).current()
    except (TransportError, NotImplementedError):
        return None


def _owner_file(path: Path | None) -> Path | None:
    """The file owning FILE's `pipeline:` name in its store when that is another file that
    exists here; None for the owner itself, an unreadable store or a file that does not load.
    Run records the store lost (`IndexLost`) are said, as `status` reads them first: taken
    for an unreadable store, `status` said no run was recorded and to start one."""
    from asapo_pipelines.runs import RunStore
    from asapo_pipelines.transport import IndexLost, TransportError, open_transport

    if path is None or path.suffix == ".json":
        return None
    try:
        pipeline, catalog = _load(path)
    except PipelinesError:
        return None
    if pipeline is None:
        return None
    try:
        with open_transport(pipeline.transport.spec(), catalog, read_only=True) as transport:
            owner = RunStore(transport, pipeline.name).other_owner(path)
    except IndexLost:
        raise
    except (TransportError, NotImplementedError):
        return None
    return Path(owner) if owner is not None and Path(owner).is_file() else None


def _say_whose_status(executor: Executor | None, path: Path | None) -> None:
    """`say_whose_runs` for `status` of a pipeline file: the counters (and the job, named
    after the pipeline) of a copy that keeps the file's name are the owner's. A transport
    that cannot be read from here says nothing: the counters say why."""
    from asapo_pipelines.transport import TransportError, open_transport

    if path is None or path.suffix == ".json":
        return
    if executor is not None and executor.pipeline is not None:
        pipeline, catalog = executor.pipeline, executor.catalog
    else:
        loaded, catalog = _load(path)
        if loaded is None:
            return
        pipeline = loaded
    try:
        with open_transport(pipeline.transport.spec(), catalog, read_only=True) as transport:
            say_whose_runs(transport, pipeline.name, path, "counters")
    except (TransportError, NotImplementedError):
        return


@click.command()
# `[FILE] UNIT`: not required for click, whose `Missing argument` came under a usage block;
# `file_and_name` says the usage in one sentence, as `tail` and `prune` do
@click.argument("args", nargs=-1, metavar="[FILE] UNIT")
@job_option
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output.")
@click.option(
    "--stdout", "only_stdout", is_flag=True, help="Only the unit's stdout (printed on stdout)."
)
@click.option("--stderr", is_flag=True, help="Only the unit's stderr (printed on stdout).")
@click.option("--task", default=None, help="Another task of the unit (e.g. install-env).")
@click.option(
    "--replica", type=click.IntRange(min=0), default=None, help="Which replica of the unit."
)
@click.option("--plain", is_flag=True, help="Nomad: ask for plain text instead of frames.")
@click.option(
    "--previous",
    is_flag=True,
    help="Local: the log of the session before the latest (kept until the next start).",
)
@executor_option
@run_dir_option
@data_dir_option
@click.pass_context
def logs(
    ctx: click.Context,
    args: tuple[str, ...],
    job: str | None,
    executor_name: str | None,
    follow: bool,
    only_stdout: bool,
    stderr: bool,
    task: str | None,
    replica: int | None,
    plain: bool,
    previous: bool,
    run_dir: str | None,
    data_dir: str | None,
) -> None:
    """Print a unit's log: `logs [FILE] UNIT` (a local run or a deployment) or `logs --job ID UNIT`.

    A unit of a local run or a Slurm deployment shows both of its streams on stdout, its
    stdout then its stderr (where workers log), so that `| grep` finds them; --stdout or
    --stderr prints one of them. The command's own messages (errors) go to stderr.
    """
    file, unit = file_and_name(args, "logs", "UNIT", "the unit whose log to print")
    given = {
        "job": job,
        "run_dir": run_dir,
        "data_dir": data_dir,
        "task": task,
        "only_stdout": only_stdout,
        "plain": plain,
        "previous": previous,
    }
    executor, path = executor_for("logs", file, executor_name, given)
    assert executor is not None
    asked_for = executor_name or any(given.get(o) for o in ("job", "run_dir", "data_dir"))
    with (
        _hinting(executor, path, executor_name),
        _no_local_run(executor, path, asked_for, False, "logs"),
    ):
        code = executor.print_logs(unit, replica=replica, follow=follow, stderr=stderr)
    ctx.exit(code)
