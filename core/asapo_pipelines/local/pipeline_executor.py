"""The local executor behind the `Executor` interface: the core's `local` executor.

It wraps what `pipeline run` already does (the supervisor in `local.executor`, the run
directory of `local.control`) without changing it: `deploy` and `start` are `pipeline run
--detach` (with its run session), the other methods read and stop the recorded run. What
`pipeline status`, `logs` and `stop` show of a local run (the state table with pids, restarts
and exit codes; a unit's stdout and stderr on their own streams) is said here, not in the CLI.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines.errors import PipelinesError, UsageError
from asapo_pipelines.executor import (
    Executor,
    ExecutorStatus,
    InstanceStatus,
    status_exit_code,
    text_lines,
)

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog
    from asapo_pipelines.pipeline.model import Pipeline

#: how `cli.output.warn` begins a line (uncoloured: the run's stderr is a pipe)
WARNING = "warning: "
#: the least time a local deploy waits for the run to start, whatever --wait says (seconds)
MIN_DEPLOY_WAIT = 5.0


def _run_dir_for(
    pipeline: Pipeline | None, file: Path | None, given: dict[str, Any]
) -> Path | None:
    """The run directory a command's target names: ``--run-dir``, a compiled job's or a pipeline
    file's under its data directory (``--data-dir`` or the default); None for no target."""
    from asapo_pipelines.local.target import pipeline_run_dir, resolve

    data_dir = given.get("data_dir")
    if given.get("run_dir"):
        return Path(given["run_dir"])
    if pipeline is not None and file is not None:
        return pipeline_run_dir(pipeline, file, data_dir)
    if file is not None:  # a compiled job (.json)
        return resolve(str(file), data_dir, None).run_dir
    return None


def _say(lines: list[str], *, err: bool) -> None:
    """Pass on what a `pipeline run --detach --json` said on its stderr: its warnings as
    warnings (stderr), the rest on stdout as the run says it without --json, unless `err`."""
    import click

    from asapo_pipelines.cli.output import warn

    for line in lines:
        if line.startswith(WARNING):
            warn(line.removeprefix(WARNING))
        else:
            click.echo(line, err=err)


class LocalPipelineExecutor(Executor):
    name = "local"
    options = frozenset({"run_dir", "data_dir", "task", "only_stdout", "previous"})
    records_runs = True  # `deploy` is `pipeline run --detach`, which records the session

    def __init__(
        self,
        pipeline: Pipeline | None,
        catalog: Catalog,
        file: Path | None,
        config: Any = None,
    ) -> None:
        super().__init__(pipeline, catalog, file, config)
        self.run_dir: Path | None = None
        #: what the last `deploy` or `start`'s run said to the user, for `show_submitted`
        self.said: list[str] = []

    @classmethod
    def for_command(
        cls, pipeline: Pipeline | None, catalog: Catalog, file: Path | None, given: dict[str, Any]
    ) -> Executor:
        # a local run is also reached from its compiled job or its run directory
        executor = cls.made(pipeline, catalog, file, given)
        assert isinstance(executor, LocalPipelineExecutor)
        executor.run_dir = _run_dir_for(pipeline, file, given)
        return executor

    @classmethod
    def has_run(cls, pipeline: Pipeline | None, file: Path | None, given: dict[str, Any]) -> bool:
        from asapo_pipelines.launchplan.rundir import start_under_way
        from asapo_pipelines.local.target import recorded

        found = _run_dir_for(pipeline, file, given)
        # a run being started is local from its start's first step: its supervisor writes the
        # state file only later, and a `stop` in between went to the cluster `deploy:` names
        return found is not None and (recorded(found) or start_under_way(found))

    def _run(self) -> Path:
        """The recorded run's directory, once a start under way there has started it (its
        supervisor's state is what `stop`, `status` and `logs` act on); one sentence when
        there is none."""
        from asapo_pipelines.local.control import wait_for_start
        from asapo_pipelines.local.target import recorded

        if self.run_dir is not None:
            wait_for_start(self.run_dir)
            if recorded(self.run_dir):
                return self.run_dir
        raise self._no_run()

    def _no_run(self) -> UsageError:
        if self.given.get("run_dir"):
            return UsageError(f"no local run recorded in {self.given['run_dir']}")
        shown = self.file or "this pipeline"
        return UsageError(f"no local run of {shown} is recorded; start one with `pipeline run`")

    def _job(self) -> dict[str, Any]:
        from asapo_pipelines.launchplan.compile import compile_pipeline

        return dict(compile_pipeline(self.loaded(), self.catalog).job)

    def plan(self) -> dict[str, Any]:
        return {"job": self._job()}

    def deploy(self, *, wait: float) -> dict[str, Any]:
        # `pipeline run --detach`: the run session (r1, resume) exactly as the command keeps it
        import json

        command = [sys.executable, "-m", "asapo_pipelines", "run", str(self.file), "--detach"]
        # --wait bounds the wait for the run to say it started; a few seconds at least, which a
        # detached start (catalog, validation, the supervisor's first records) can take
        limit = max(wait, MIN_DEPLOY_WAIT) + self._orphans_budget()
        try:
            done = subprocess.run(
                [*command, *self.run_flags, "--json"],
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise self._not_started_in(limit) from None
        # with --json the run says on stderr all it says to the user: which run it starts or
        # resumes, the tasks of a lost run it stopped, its warnings
        said = done.stderr.strip().splitlines()
        if done.returncode != 0:
            from asapo_pipelines.local.errors import LocalRunError

            # its warnings (a service it could not ask), then its error (of one line or more)
            _say([line for line in said if line.startswith(WARNING)], err=True)
            error = "\n".join(line for line in said if not line.startswith(WARNING))
            raise LocalRunError(error.removeprefix("error: ") or "the local run did not start")
        self.said = said
        state: dict[str, Any] = json.loads(done.stdout)
        return state

    def _orphans_budget(self) -> float:
        """The time the run may take, before it starts, to stop the tasks a lost supervisor
        left running here (`control.stop_orphans`: up to their KillTimeout, for their final
        status records); 0 when none runs. A start cut short by the wait would stop them and
        run nothing."""
        from asapo_pipelines.launchplan.rundir import STATE_FILE
        from asapo_pipelines.local.control import live_tasks
        from asapo_pipelines.local.job import read_job
        from asapo_pipelines.local.state import read_state

        if self.run_dir is None:
            return 0.0
        try:
            if not live_tasks(read_state(self.run_dir / STATE_FILE)):
                return 0.0
            job = read_job(self._job())
        except PipelinesError:
            return 0.0  # no state to read: nothing was left running
        return max((t.kill_timeout for g in job.groups for t in g.tasks), default=0.0)

    def _not_started_in(self, limit: float) -> Exception:
        """`pipeline run --detach` said nothing within the limit, and was killed: its
        supervisor, when it had started one, goes on (it is detached), else nothing runs."""
        from asapo_pipelines.local.control import supervisor_alive
        from asapo_pipelines.local.errors import LocalRunError

        if self.run_dir is not None and supervisor_alive(self.run_dir):
            after = f"its supervisor runs: `pipeline status {self.file}` shows how far it got"
        else:
            after = "nothing of it runs; deploy again, with a larger --wait on a busy machine"
        return LocalRunError(f"the local run did not say it started within {limit:g} s: {after}")

    def refuse(self, command: str) -> None:
        """A job already running here is not deployed or started again (`pipeline run` would
        refuse it too, but only after `deploy` had said it was starting)."""
        from asapo_pipelines.local.control import already_running, refused_file, supervisor_alive

        if self.run_dir is not None and supervisor_alive(self.run_dir):
            # the file deployed, for the refusal to name the other file's run that took this
            # run directory at the same moment (`file_run_dir` could not yet tell them apart)
            mine = refused_file(self.file)
            data_dir = self.given.get("data_dir")
            raise already_running(self.run_dir.name, self.run_dir, mine, mine, data_dir)

    def start(self, *, wait: float) -> dict[str, Any]:
        return self.deploy(wait=wait)

    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        from asapo_pipelines.local.control import stop_run, supervisor_alive

        if purge:  # a local run's directory stays for its logs; `pipeline runs` lists the run
            raise UsageError("the local executor has no --purge option for `pipeline stop`")
        run_dir = self._run()
        was_running = supervisor_alive(run_dir)
        return {**stop_run(run_dir), "was_running": was_running}

    def status(self) -> ExecutorStatus:
        from asapo_pipelines.local.control import run_status

        state = run_status(self._run())
        return ExecutorStatus(
            executor=self.name,
            deployment=str(state.get("job") or self.loaded().name),
            state=str(state.get("status") or "not started"),
            instances=[
                InstanceStatus(
                    unit=str(u.get("group")),
                    replica=int(u.get("index", 0)),
                    state=str(u.get("state")),
                    task_id=None if u.get("pid") is None else str(u.get("pid")),
                    restarts=int(u.get("restarts") or 0),
                )
                for u in state.get("units") or []
                if u.get("lifecycle", "main") == "main"
            ],
        )

    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        from asapo_pipelines.local.control import unit_log

        name = unit if replica is None else f"{unit}[{replica}]"
        yield from text_lines(unit_log(self._run(), name, stderr=stderr, follow=follow))

    # -- what the user sees ------------------------------------------------------------------
    def show_status(self, *, as_json: bool) -> int:
        """The run's table (state, pid, restarts, exit codes) with the counters its workers
        published, the units' summaries and the run's message; 1 for a failed or lost run
        (`status_exit_code`)."""
        from asapo_pipelines.cli.output import console, print_json
        from asapo_pipelines.local.commands import status_json, store_view
        from asapo_pipelines.local.control import (
            run_status,
            stopped_orphans_note,
            supervisor_alive,
        )
        from asapo_pipelines.local.live import status_table
        from asapo_pipelines.worker.status import summary_lines

        try:
            run_dir = self._run()
        except UsageError as exc:
            raise self._without_run(exc, as_json=as_json) from None
        state = run_status(run_dir)
        self.shown_state = str(state.get("status") or "not started")  # as `status()` says it
        pruned, published, named, self.shown_run = store_view(
            run_dir, state, self.pipeline, self.catalog
        )
        if pruned and not supervisor_alive(run_dir):
            # its run directory outlives the run: a ghost job `complete` with its units
            raise self._without_run(self._no_run(), as_json=as_json)
        # a failed or lost run is a failure for scripts too (`pipeline status FILE && ...`)
        code = status_exit_code(self.shown_state)
        if as_json:
            print_json(status_json(state, published))
            return code
        out = console()
        if not out.is_terminal:
            out.width = max(out.width, 120)
        out.print(status_table(state, published, named=named))
        for line in summary_lines((published or {}).values()):
            out.print(line, markup=False, highlight=False)
        # why the outputs paused when this run started: the lost run's tasks it stopped
        if told := stopped_orphans_note(state):
            out.print(told, markup=False, highlight=False)
        if state.get("message"):
            out.print(str(state["message"]), markup=False, highlight=False)
        return code

    def _without_run(self, error: UsageError, *, as_json: bool) -> UsageError:
        """`error` (no local run recorded), for `status` to raise; with --json, first the
        document of no run on stdout (a tool reads stdout as JSON). The sentence still goes to
        stderr and the exit code stays that of `status` without --json, so `pipeline status
        FILE --json && ...` means the same."""
        if as_json:
            from asapo_pipelines.cli.output import print_json
            from asapo_pipelines.local.commands import no_run_json

            named = self.file if self.pipeline is not None else None  # not a compiled job
            print_json(
                no_run_json(
                    None if self.pipeline is None else self.pipeline.name,
                    self.run_dir,
                    None if named is None else str(Path(named).resolve()),
                    str(error),
                )
            )
        return error

    def print_logs(self, unit: str, *, replica: int | None, follow: bool, stderr: bool) -> int:
        """Both of the unit's streams on stdout, its stdout then its stderr (where workers
        log), as `kubectl logs` shows a container's: `pipeline logs FILE UNIT | grep X` finds
        what the worker logged, which went to stderr before; this command's own errors stay
        on stderr. Followed, their lines as they come, whole. ``--stdout`` or ``--stderr``
        prints one of them; ``--task`` another task of the unit; ``--previous`` the session
        before the latest (a failed night's, after a resume)."""
        from asapo_pipelines.local.commands import copy_logs
        from asapo_pipelines.local.control import unit_log
        from asapo_pipelines.local.logs import whole_lines

        previous = bool(self.given.get("previous"))
        if previous and follow:
            raise UsageError("--previous shows an ended session's log, which --follow cannot")
        run_dir = self._run()
        if replica is not None:
            unit = f"{unit.partition('[')[0]}[{replica}]"
        streams = [stderr] if self.given.get("only_stdout") or stderr else [False, True]
        task = self.given.get("task")
        readers = [
            # whole lines: two streams followed into one output must not cut each other's
            (
                whole_lines(
                    unit_log(run_dir, unit, task=task, stderr=err, follow=follow, previous=previous)
                ),
                sys.stdout.buffer,
            )
            for err in streams
        ]
        try:
            copy_logs(readers, follow)
        except KeyboardInterrupt:
            return 130
        return 0

    def show_submitted(self, result: dict[str, Any], *, as_json: bool, start: bool) -> None:
        """As `pipeline run --detach` says it: first what its run said (which run it starts or
        resumes, the tasks of a lost run it stopped), on stderr with --json, and its warnings
        on stderr."""
        _say(self.said, err=as_json)
        super().show_submitted(result, as_json=as_json, start=start)

    def show_stop(self, result: dict[str, Any], *, as_json: bool) -> None:
        import click

        from asapo_pipelines.cli.output import print_json

        if as_json:
            print_json(result)
        # a lost run's message names the orphans its first stop killed: a later stop that
        # repeated it would name pids it did not touch (dead, or by now someone else's)
        elif result["was_running"] or result.get("stopped_lost"):
            job, message = result.get("job"), str(result.get("message") or "")
            # the supervisor's own sentence names the job already ("job p65 stopped (SIGTERM)")
            if not message.startswith(f"job {job} "):
                message = f"job {job} {result.get('status')}: {message}"
            click.echo(message)
        else:
            click.echo(f"job {result.get('job')} is not running ({result.get('status')})")
