"""`SlurmExecutor`: a pipeline's unit instances as Slurm batch jobs (see `plan` for why one job
per instance), watched and restarted by `asapo_pipelines_slurm.watch`."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from asapo_pipelines.sdk import Executor, ExecutorStatus, InstanceStatus
from asapo_pipelines.sdk.executors import RUN_ENV
from asapo_pipelines_slurm import commands, environment
from asapo_pipelines_slurm.commands import SlurmError, SlurmFailed, SlurmOffline
from asapo_pipelines_slurm.config import SlurmConfig
from asapo_pipelines_slurm.plan import DEFAULT_STATE_DIR, SlurmPlan, plan_for, state_dir
from asapo_pipelines_slurm.state import (
    Layout,
    deployed_file,
    end_watcher,
    read_state,
    watcher_alive,
    write_state,
)
from asapo_pipelines_slurm.watch import (
    ALIVE,
    FINAL,
    ended_as,
    exit_of,
    judged,
    last_error,
    restarted,
    submit,
)

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.sdk.executors import Pipeline


class SlurmExecutor(Executor):
    name = "slurm"
    #: `pipeline logs --stdout`: one stream, as for a local run
    options = frozenset({"only_stdout"})

    @property
    def settings(self) -> SlurmConfig:
        if isinstance(self.config, SlurmConfig):
            return self.config
        return SlurmConfig.model_validate(
            self.config.model_dump() if self.config is not None else {}
        )

    @property
    def layout(self) -> Layout:
        return Layout(state_dir(self.pipeline, self.file, self.settings))

    @classmethod
    def has_run(cls, pipeline: Pipeline | None, file: Path | None, given: dict[str, Any]) -> bool:
        """A deployment of `file` recorded in its state directory here: a file whose
        ``deploy:`` section names another executor, deployed with ``--executor slurm``."""
        if pipeline is None or file is None:
            return False
        config = pipeline.deploy.config(cls.name)
        settings = SlurmConfig.model_validate(config.model_dump() if config is not None else {})
        recorded = deployed_file(Layout(state_dir(pipeline, file, settings)))
        return recorded == str(Path(file).resolve())

    def deployed_text(self) -> str | None:
        """The copy of the file the jobs run (`Layout.pipeline`), once deployed here."""
        layout = self.layout
        if read_state(layout) is None:
            return None
        try:
            return layout.pipeline.read_text(encoding="utf-8")
        except OSError:
            return None

    def deployed_run(self) -> str | None:
        """The run `deploy` recorded in the state; for a state written before it was kept
        there, the one its job scripts hand the workers."""
        state = read_state(self.layout)
        if state is None:
            return None
        if state.get("run"):
            return str(state["run"])
        for instance in state.get("instances", {}).values():
            with contextlib.suppress(OSError):
                script = Path(instance["script_path"]).read_text(encoding="utf-8")
                found = _exported(script, RUN_ENV)
                if found:
                    return found
        return None

    # -- plan and deploy ---------------------------------------------------------------------

    def compile(self) -> SlurmPlan:
        return plan_for(self.pipeline, self.catalog, self.file, self.settings, self.run_id)

    def plan(self) -> dict[str, Any]:
        return self.compile().to_json()

    def check_partition(self) -> dict[str, Any]:
        """What the cluster says of the partition before anything is submitted (`plan`): its
        state; a partition it does not have is an error (`NoSuchPartition`). A cluster that
        cannot be asked from here (no Slurm tools, no configuration, its controller down)
        leaves the plan unchecked, and says so: a plan is also made away from the cluster."""
        name = self.settings.partition
        if name is None:
            return {"name": None, "checked": False}
        try:
            fields = commands.check_partition(name)
        except SlurmOffline as exc:
            return {"name": name, "checked": False, "why": exc.message}
        return {"name": name, "checked": True, "state": fields.get("State", "UNKNOWN")}

    def show_plan(self, *, as_json: bool) -> None:
        """Per unit instance its sbatch options and script, readable; with --json the plan
        and the partition's check as JSON. Warnings go to stderr either way."""
        planned = self.compile()
        partition = self.check_partition()
        for warning in [*planned.warnings, *_partition_warnings(partition)]:
            print(f"warning: {warning}", file=sys.stderr)
        if as_json:
            text = json.dumps({**planned.to_json(), "partition": partition}, indent=2)
            sys.stdout.write(text + "\n")
        else:
            sys.stdout.write(planned.describe(partition))

    def show_submitted(self, result: dict[str, Any], *, as_json: bool, start: bool) -> None:
        """What `deploy` or `start` did, then one warning on stderr when a job failed within
        the wait and is being restarted. The command still exits 0: a restart is the policy
        at work and the deployment goes on (a failure for good fails the command). Said only
        as a clause inside a long line, a worker failing at its start was easy to miss. A
        result with a unit that failed for good (`_failed_result`) fails the command with its
        message, after the document with --json (its only output on stdout)."""
        if result.get("failed"):
            if as_json:
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
            raise SlurmError(result["message"])
        super().show_submitted(result, as_json=as_json, start=start)
        restarting = sorted(result.get("restarting") or {})
        if restarting:
            unit = self._state()["instances"][restarting[0]]["unit"]
            print(
                f"warning: the job(s) of {', '.join(restarting)} failed within the wait and "
                f"are being restarted; `pipeline logs {shlex.quote(str(self.file))} {unit}` "
                "shows why",
                file=sys.stderr,
            )

    def refuse(self, command: str) -> None:
        """Refuse `deploy` of a deployment that runs and `start` of one that is not stopped,
        before `pipeline deploy` or `start` records anything in the run (see
        `asapo_pipelines.cli.deployments.refuse`); `deploy` and `start` check again. `run`:
        a session of the run elsewhere (`asapo_pipelines.runs.lifecycle.refuse_while_deployed`)."""
        if command == "deploy":
            self._refuse_deploy()
        elif command == "start":
            self._refuse_start(self._state())
        elif command == "run":
            self._refuse_run()

    def _refuse_run(self) -> None:
        """Refuse another session of the run (`pipeline run`) while this deployment still
        runs: its jobs would read the same inputs, and every result would be written twice."""
        state = read_state(self.layout)
        if state is not None and _running(state):
            name = state.get("pipeline", self.loaded().name)
            raise SlurmError(
                f"pipeline {name} is deployed on Slurm and still runs (state in "
                f"{self.layout.root}); stop the deployment first with `pipeline stop {self.file}`"
            )

    def _refuse_deploy(self) -> None:
        previous = read_state(self.layout)
        self._check_owner(previous)
        if previous is not None and _running(previous):
            raise SlurmError(
                f"pipeline {previous.get('pipeline', self.loaded().name)} is already deployed "
                f"on Slurm (state in {self.layout.root}); stop it first with "
                f"`pipeline stop {shlex.quote(str(self.file))}`"
            )
        renamed = self._renamed() if previous is None else None
        if renamed is not None and _running(renamed[1]):
            # a second deployment of the same file: its jobs would read the same inputs and
            # write the same results (an outside tester's was stopped by the NeXus lock alone)
            raise SlurmError(
                f"{self.file} is still deployed on Slurm as pipeline {renamed[1]['pipeline']} "
                f"(state in {renamed[0].root}), the name it gave before its `pipeline:` was "
                f"edited: {self._rename_back(renamed)} and stop that deployment first"
            )

    def _renamed(self) -> tuple[Layout, dict[str, Any]] | None:
        """The deployment of this very file recorded under another pipeline name (its
        `pipeline:` was edited since it was deployed), running ones first; None when none."""
        if self.file is None or self.settings.state_dir:
            return None
        mine = str(Path(self.file).resolve())
        found = []
        folder = Path(mine).parent / DEFAULT_STATE_DIR
        for root in sorted(folder.iterdir()) if folder.is_dir() else []:
            layout = Layout(root)
            if root == self.layout.root or not layout.state.is_file():
                continue
            with contextlib.suppress(SlurmError):
                state = read_state(layout)
                if state is not None and state.get("file") == mine and state.get("pipeline"):
                    found.append((layout, state))
        found.sort(key=lambda f: not _running(f[1]))
        return found[0] if found else None

    def _rename_back(self, renamed: tuple[Layout, dict[str, Any]]) -> str:
        old, now = renamed[1]["pipeline"], self.loaded().name
        return f"put `pipeline: {old}` back in place of `pipeline: {now}`"

    def _refuse_start(self, state: dict[str, Any]) -> None:
        """Refuse `start` of a deployment that runs or is complete; for a stopped one, wait
        until Slurm has ended its jobs (`_wait_ended`)."""
        if watcher_alive(state):
            raise SlurmError(f"pipeline {state['pipeline']} is already running on Slurm")
        if state["state"] == "complete":
            # a new session would only find every unit's work done: nothing to start
            raise SlurmError(
                f"pipeline {state['pipeline']} is complete on Slurm (state in "
                f"{self.layout.root}): nothing to start; `pipeline deploy {self.file}` runs "
                "its units again"
            )
        if state["state"] != "running":
            self._wait_ended(state)

    def _wait_ended(self, state: dict[str, Any]) -> None:
        """Wait until no job of a stopped deployment is known to Slurm as alive, else refuse.
        A cancelled job stays COMPLETING for a while, and its worker may still be draining:
        a new job of the same instance beside it would run two workers of one instance (two
        writers of one file). Taken for running, it was not resubmitted at all, and its
        instance stayed `stopped` in a deployment shown running."""
        alive = _wait_gone([i["job_id"] for i in state["instances"].values() if i["job_id"]])
        if alive:
            raise SlurmError(
                f"Slurm has not ended the job(s) {', '.join(alive)} of the stopped pipeline "
                f"{state['pipeline']} within {GONE_TIMEOUT:g} s (squeue still lists them); "
                "start it again once it no longer does"
            )

    def _check_owner(self, state: dict[str, Any] | None) -> None:
        """Refuse a state directory that holds another pipeline file's deployment (a
        `state_dir` given in two files): its jobs, scripts and state are that file's."""
        other = (state or {}).get("file")
        mine = str(Path(self.file).resolve()) if self.file is not None else None
        if other and mine and other != mine:
            raise SlurmError(
                f"the Slurm state directory {self.layout.root} holds the deployment of "
                f"{other}, so {mine} cannot use it: give one of the two files another "
                "`state_dir` in its `deploy.slurm` section"
            )

    def deploy(self, *, wait: float = 30.0) -> dict[str, Any]:
        plan = self.compile()
        layout = self.layout
        self._refuse_deploy()
        commands.check_partition(self.settings.partition)
        self._check_environment()
        self._write_files(plan, layout)
        instances: dict[str, dict[str, Any]] = {}
        for job in plan.jobs:
            instances[job.key] = {
                "unit": job.unit,
                "replica": job.replica,
                "name": job.name,
                "options": job.options,
                "script_path": job.script_path,
                "stdout": job.stdout,
                "stderr": job.stderr,
                "job_id": None,
                "jobs": [],
                "restarts": 0,
                "state": "new",
                "detail": "",
            }
        state = {
            "pipeline": plan.pipeline,
            # the file deployed: the watcher has the run's end recorded for it
            "file": str(Path(self.file).resolve()) if self.file is not None else None,
            "type": plan.type,
            # the run its workers join: `start` refuses a new run when the store lost it
            "run": self.run_id,
            "state": "running",
            "restart": self.settings.restart.model_dump(),
            "poll_interval": self.settings.poll_interval,
            "instances": instances,
        }
        self._submit_all(state, layout)
        self._start_watcher(layout)
        seen = self._waited(wait)
        jobs = {k: i["job_id"] for k, i in instances.items()}
        result = {
            "deployment": plan.pipeline,
            "message": f"{len(jobs)} Slurm job(s) submitted "
            f"({', '.join(f'{k} {j}' for k, j in jobs.items())})"
            f"{_not_placed(seen, wait)}; state in {layout.root}",
            "state_dir": str(layout.root),
            "jobs": jobs,
            "pending": _pending(seen),
            "restarting": _restarting(seen),
            "warnings": plan.warnings,
        }
        self._refuse_failed(seen, set(instances), result)
        return result

    def _check_environment(self) -> None:
        """The jobs' own environment (`python: {venv: ...}`) can run the pipeline: its
        `pipeline validate` accepts the file, as each worker's start will."""
        python = self.settings.python
        file = Path(self.file).resolve() if self.file is not None else None
        environment.check(python.venv if python is not None else None, file)

    def _write_files(self, plan: SlurmPlan, layout: Layout) -> None:
        try:
            for sub in ("jobs", "logs"):
                (layout.root / sub).mkdir(parents=True, exist_ok=True)
            layout.pipeline.write_text(plan.pipeline_text, encoding="utf-8")
            for job in plan.jobs:
                path = Path(job.script_path)
                path.write_text(job.script, encoding="utf-8")
                path.chmod(0o755)
        except OSError as exc:
            raise SlurmError(f"cannot prepare the deployment in {layout.root}: {exc}") from None

    def _submit_all(
        self, state: dict[str, Any], layout: Layout, only: set[str] | None = None
    ) -> None:
        """Submit every instance (or those in `only`); when Slurm rejects one, cancel those
        submitted so far, so nothing half-deployed is left running."""
        submitted: list[str] = []
        try:
            for key, instance in state["instances"].items():
                if only is not None and key not in only:
                    continue
                job_id = submit(instance)
                submitted.append(job_id)
                instance["jobs"] = [*instance.get("jobs", []), job_id]
                instance.update(job_id=job_id, state="pending", detail="submitted")
                for said in ("cannot_start", "never_since"):  # of an earlier job
                    instance.pop(said, None)
        except SlurmError:
            with contextlib.suppress(SlurmError):
                commands.scancel(submitted)
            raise
        state["state"] = "running"
        write_state(layout, state)

    def _start_watcher(self, layout: Layout, timeout: float = 20.0) -> None:
        argv = [sys.executable, "-m", "asapo_pipelines_slurm.watch", str(layout.root)]
        with open(layout.watcher_log, "ab") as log:
            # its own session: it outlives this command and the terminal's hang-up
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = read_state(layout)
            if state is not None and state.get("watcher_pid") == proc.pid:
                return
            if proc.poll() is not None:
                raise SlurmError(
                    f"the job watcher exited with code {proc.returncode}; see {layout.watcher_log}"
                )
            time.sleep(0.05)
        raise SlurmError(f"the job watcher did not start within {timeout:g} s")

    def _wait_placed(self, wait: float) -> dict[str, Any]:
        """Up to `wait` seconds for every job to be placed; the state seen last. Jobs pending
        for a reason that passes (Resources, Priority: the cluster is busy) are not an error:
        the result names them. A job Slurm says cannot start as the cluster is set up
        (`commands.never_starts`: its partition is down, it asks for more than a node has) for
        `watch.NEVER_SETTLE` seconds ends the wait, and the deployment (`_abandon`), naming the
        reason Slurm gives last."""
        deadline = time.monotonic() + wait
        while True:
            state = read_state(self.layout) or {}
            instances = state.get("instances", {})
            stuck = {k: i for k, i in instances.items() if _never_starts(i)}
            if stuck:
                self._abandon(stuck)
            placed = all(i["state"] not in WAITING for i in instances.values())
            if placed or time.monotonic() >= deadline:
                return state
            time.sleep(0.2)

    def _waited(self, wait: float) -> dict[str, Any]:
        """`_wait_placed`, then what became of the jobs that were not placed: a job that
        ended before the watcher saw it is waited for until the watcher has handled it
        (`_handled`), so that one that failed for good is seen so (`_refuse_failed`). Said
        "still pending", such a job read as waiting for resources while its worker had exited
        with a configuration error, and `deploy` exited 0."""
        return self._handled(self._wait_placed(wait))

    def _handled(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state once the watcher has handled every job that squeue says has ended but
        the state still shows waiting (the watcher looks every `poll_interval` seconds). A
        job it has not handled within `_handle_timeout` is marked `exited` in the returned
        copy only, with Slurm's word on its end: the watcher's judgment stays its own."""
        waiting = {
            k: i["job_id"]
            for k, i in state.get("instances", {}).items()
            if i["state"] in UNHANDLED and i["job_id"]
        }
        queued = commands.queue(list(waiting.values()))
        ended = {k: j for k, j in waiting.items() if queued.get(j, {}).get("state") not in ALIVE}
        deadline = time.monotonic() + _handle_timeout(state)
        while ended:
            state = read_state(self.layout) or state
            ended = {
                k: j
                for k, j in ended.items()
                if state["instances"][k]["job_id"] == j
                and state["instances"][k]["state"] in UNHANDLED
            }
            if not ended or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        for key, job in ended.items():
            _, _, what = exit_of(job, queued.get(job, {}).get("state"))
            cause = last_error(state["instances"][key])
            detail = f"{what}: {cause}" if cause else what
            state["instances"][key].update(state="exited", detail=detail)
        return state

    def _refuse_failed(
        self, state: dict[str, Any], submitted: set[str], result: dict[str, Any]
    ) -> None:
        """Fail `deploy` or `start` in one sentence when an instance it submitted failed
        for good within the wait (the watcher has then cancelled the other jobs): the
        deployment is over, and a script's `pipeline deploy F && ...` must not go on. Raised
        (the command ends the run it began, as for any failed submission) with `result`, the
        command's document, made a failed one (`_failed_result`): `deploy --wait --json`
        printed the error alone, nothing on stdout for a script to read."""
        instances = state.get("instances", {})
        failed = {k for k, i in instances.items() if k in submitted and i["state"] == "failed"}
        if failed:
            document = self._failed_result(state, failed, result)
            raise SlurmFailed(document["message"], document)

    def _failed_sentence(self, state: dict[str, Any], keys: set[str]) -> str:
        """One sentence naming each instance of `keys` that failed for good, with why, and
        the other jobs the watcher cancelled then; "" when none failed."""
        instances = state.get("instances", {})
        failed = [i for k, i in instances.items() if k in keys and i["state"] == "failed"]
        if not failed:
            return ""
        name = state.get("pipeline", self.loaded().name)
        said = [f"unit {i['unit']} replica {i['replica']}" for i in failed]
        said[0] += f" of pipeline {name}"
        what = "; ".join(
            f"{who} failed: {i['detail']}" for who, i in zip(said, failed, strict=True)
        )
        stopped = [i for i in instances.values() if str(i.get("detail")).startswith("cancelled:")]
        if stopped:
            what += f"; so the deployment's other {len(stopped)} job(s) were cancelled"
        return what

    def _wait_watcher_ended(self, state: dict[str, Any]) -> dict[str, Any]:
        """The state once the watcher has ended the deployment (after a failure it stops the
        other jobs at its first look), or as it is after `_handle_timeout`."""
        deadline = time.monotonic() + _handle_timeout(state)
        while True:
            state = read_state(self.layout) or state
            if state["state"] in FINAL or time.monotonic() >= deadline:
                return state
            time.sleep(0.2)

    def _abandon(self, stuck: dict[str, dict[str, Any]]) -> NoReturn:
        """Cancel every job of a deployment one of whose jobs cannot start, and fail it in one
        sentence naming the units and Slurm's reason. Not left pending: the pipeline cannot
        run without that unit, while its other units would take inputs nobody processes
        further; and an operator expects a failed `deploy` to leave nothing behind, as when
        Slurm rejects a job at once. (`--wait 0` submits without waiting: its jobs stay, and
        `pipeline status` shows their reasons.)"""
        state = self._state()
        end_watcher(state)  # first, so that nothing is resubmitted
        state = self._state()
        cancelled, _ = self._cancel(state)
        for key, instance in state["instances"].items():
            if key in stuck:
                reason = stuck[key]["detail"]
                why = commands.never_starts(reason)
                instance.update(state="failed", detail=f"cannot start: {reason} ({why})")
            elif instance["state"] not in FINAL:
                instance.update(state="stopped", detail="cancelled: another unit cannot start")
        state["state"] = "failed"
        write_state(self.layout, state)
        raise SlurmError(_cannot_start(stuck, len(cancelled)))

    def _cancel(self, state: dict[str, Any]) -> tuple[list[str], list[str]]:
        """`scancel` every job of the deployment that still runs or waits: (the jobs
        cancelled, the jobs that had already ended). squeue says which: the state's word may
        be old (no watcher running, or between two of its looks), and scancel says nothing of
        a job that has ended."""
        jobs = [
            i["job_id"]
            for i in state["instances"].values()
            if i["job_id"] and i["state"] not in FINAL
        ]
        # and any job of this deployment the state does not name (a watcher killed between
        # sbatch and writing the state, a state directory lost and deployed again): its
        # script is this deployment's, not only its name
        scripts = {i["name"]: i["script_path"] for i in state["instances"].values()}
        jobs += [j for j in commands.jobs_of(scripts) if j not in jobs]
        queued = commands.queue(jobs)
        cancelled = [j for j in jobs if queued.get(j, {}).get("state") in ALIVE]
        commands.scancel(cancelled)
        return cancelled, [j for j in jobs if j not in cancelled]

    # -- start and stop ----------------------------------------------------------------------

    def start(self, *, wait: float = 30.0) -> dict[str, Any]:
        layout = self.layout
        state = self._state()
        self._refuse_start(state)
        self._check_environment()
        again, lost, ended = _to_submit(state)
        if state["state"] != "running":
            _new_session(state)
        state.pop("ended_at", None)  # of the session before
        self._submit_all(state, layout, only=again)
        for key in lost:
            # its job ended while no watcher looked (the watcher was killed): replacing it is
            # the restart the watcher would have made, counted as such; a stopped or failed
            # instance started again by the user is a new start, not a restart
            state["instances"][key]["restarts"] = int(state["instances"][key]["restarts"]) + 1
            restarted(state["instances"][key], time.time())
        write_state(layout, state)
        self._start_watcher(layout)
        failed = {key for key in ended if state["instances"][key]["state"] == "failed"}
        if failed:
            # the watcher stops the other jobs after the failure and ends the run `failed`,
            # as it would have had it looked; `start` fails as `deploy --wait` does, after
            # its result (`show_submitted`)
            return self._failed_result(self._wait_watcher_ended(state), failed)
        seen = self._waited(wait)
        result = {
            "deployment": state["pipeline"],
            "message": f"{len(again)} Slurm job(s) submitted again{_finished(ended, state)}"
            f"{_not_placed(seen, wait)}",
            "submitted": sorted(again),
            "pending": _pending(seen),
            "restarting": _restarting(seen),
        }
        self._refuse_failed(seen, again, result)
        return result

    def _failed_result(
        self, state: dict[str, Any], failed: set[str], result: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The command's `result` when a unit failed for good: the deployment's `state`,
        `failed` (instance key -> why), as `restarting` says why of a restart, and the
        command's one sentence as its `message`. Without `result`, `start`'s when a unit had
        failed while no watcher looked: nothing submitted. Raised from `start` itself, that
        sentence was all `start --json` printed, no document for a script to read."""
        empty = {"deployment": state["pipeline"], "submitted": [], "pending": {}, "restarting": {}}
        return {
            **(empty if result is None else result),
            "state": state["state"],
            "message": self._failed_sentence(state, failed),
            "failed": {k: state["instances"][k]["detail"] for k in sorted(failed)},
        }

    def stop(self, *, purge: bool = False) -> dict[str, Any]:
        layout = self.layout
        state = self._state()
        self._ask_before_stop(state)
        # the watcher first, so that it does not resubmit what is cancelled here
        end_watcher(state)
        state = self._state()
        before = state["state"]
        cancelled, ended = self._cancel(state)
        # the workers drain on SIGTERM: returned once they are gone, the run's end counts
        # their last records, and a `start` finds no job of this deployment still completing
        completing = _wait_gone(cancelled)
        if cancelled or "ended_at" not in state:
            # when the jobs ended: the run's end, also when recorded by a later `stop` (the
            # transport was down during this one)
            state["ended_at"] = time.time()
        failed = _mark_stopped(state, ended)
        write_state(layout, state)
        if purge:
            shutil.rmtree(layout.root, ignore_errors=True)
        message = _stopped_message(
            state["state"],
            before,
            cancelled,
            ended,
            completing,
            [state["instances"][key] for key in failed],
        )
        return {
            "deployment": state["pipeline"],
            "message": message + (f"; {layout.root} removed" if purge else ""),
            "cancelled": cancelled,
            "already_ended": ended,
            "still_completing": completing,
            # instance key -> why, of the units whose job had failed for good before the stop
            "failed_before": failed,
            "purged": purge,
            "ended_at": state["ended_at"],
        }

    def _ask_before_stop(self, state: dict[str, Any]) -> None:
        """Refuse a stop that could cancel nothing, before it ends the watcher. Asked after,
        a controller that does not answer left the jobs running unwatched (none restarted,
        the deployment `unwatched`) behind "the Slurm controller is unreachable" alone."""
        jobs = [i["job_id"] for i in state["instances"].values() if i.get("job_id")]
        try:
            commands.queue(jobs)
        except SlurmOffline as exc:
            again = f"`pipeline stop {self.file}`" if self.file is not None else "the stop"
            raise type(exc)(
                f"{exc.message}; nothing was stopped: the deployment's jobs and its job "
                f"watcher run on, so run {again} again once Slurm answers"
            ) from None

    # -- status and logs ---------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        state = read_state(self.layout)
        if state is None:
            renamed = self._renamed()
            if renamed is not None:
                # "deploy it" led to a second deployment of the file beside the first
                raise SlurmError(
                    f"pipeline {self.pipeline.name} is not deployed on Slurm, but {self.file} "
                    f"is, as pipeline {renamed[1]['pipeline']} (state in {renamed[0].root}), "
                    f"the name it gave before its `pipeline:` was edited: "
                    f"{self._rename_back(renamed)} to see or stop that deployment"
                )
            raise SlurmError(
                f"pipeline {self.pipeline.name} is not deployed on Slurm (no state in "
                f"{self.layout.root}); deploy it with `pipeline deploy`"
            )
        self._check_owner(state)
        return state

    def status(self) -> ExecutorStatus:
        state = self._state()
        instances = state["instances"]
        live = commands.queue([i["job_id"] for i in instances.values() if i["job_id"]])
        batch = state["type"] == "batch"
        shown = []
        for instance in instances.values():
            word, detail = _shown(instance, live.get(instance["job_id"] or ""), batch)
            shown.append(
                InstanceStatus(
                    unit=instance["unit"],
                    replica=int(instance["replica"]),
                    state=word,
                    task_id=instance["job_id"],
                    restarts=int(instance.get("restarts", 0)),
                    detail=detail,
                )
            )
        overall = state["state"]
        if overall == "running" and not watcher_alive(state):
            overall = "unwatched"
        return ExecutorStatus(
            executor="slurm",
            deployment=state["pipeline"],
            state=overall,
            instances=shown,
            extra={
                "state_dir": str(self.layout.root),
                "watcher_pid": state.get("watcher_pid"),
                "jobs": {k: i.get("jobs", []) for k, i in instances.items()},
            },
        )

    def show_status(self, *, as_json: bool) -> int:
        """The table, then what an `unwatched` deployment means: nobody restarts its jobs."""
        code = super().show_status(as_json=as_json)
        if self.shown_state == "unwatched":
            pid = (read_state(self.layout) or {}).get("watcher_pid")
            print(
                f"warning: the job watcher of this deployment is not running (pid {pid}): no "
                f"job is restarted; `pipeline start {shlex.quote(str(self.file))}` starts it "
                "again",
                file=sys.stderr,
            )
        return code

    def logs(
        self, unit: str, *, replica: int | None = None, follow: bool = False, stderr: bool = False
    ) -> Iterator[str]:
        key, instance = self._instance(unit, replica)
        path = Path(instance["stderr" if stderr else "stdout"])
        return self._read(path, follow, key)

    def print_logs(self, unit: str, *, replica: int | None, follow: bool, stderr: bool) -> int:
        """Both of the job's log files on stdout, its stdout then its stderr (where the worker
        logs), as for a local run; ``--stdout`` or ``--stderr`` one of them. Shown its stdout
        alone, an operator read an empty log of a worker that had logged everything. A log
        file that is not there (a job not started yet, a scratch cleaner) is one sentence."""
        key, instance = self._instance(unit, replica)
        only = "stderr" if stderr else "stdout" if self.given.get("only_stdout") else None
        paths = [Path(instance[s]) for s in ((only,) if only else ("stdout", "stderr"))]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing and not follow:
            raise SlurmError(
                f"unit {unit} replica {replica or 0} has no log file {' nor '.join(missing)} "
                f"(job {instance['job_id']} has not started yet, or its logs were removed)"
            )
        try:
            for line in _merged([self._read(p, follow, key) for p in paths], follow):
                print(line, flush=follow)
        except KeyboardInterrupt:
            return 130
        return 0

    def _instance(self, unit: str, replica: int | None) -> tuple[str, dict[str, Any]]:
        state = self._state()
        key = f"{unit}-{replica or 0}"
        instance = state["instances"].get(key)
        if instance is None:
            units = sorted({i["unit"] for i in state["instances"].values()})
            raise SlurmError(
                f"pipeline {state['pipeline']} has no unit {unit} replica {replica or 0} "
                f"(its units: {', '.join(units)})"
            )
        return key, instance

    def _read(self, path: Path, follow: bool, key: str) -> Iterator[str]:
        try:
            fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - generator
        except FileNotFoundError:
            if not follow:
                return
            while not path.exists():
                time.sleep(0.2)
            fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
        with fh:
            buffer = ""
            while True:
                chunk = fh.readline()
                if chunk:
                    buffer += chunk
                    if buffer.endswith("\n"):
                        yield buffer.rstrip("\n")
                        buffer = ""
                    continue
                if not follow:
                    break
                state = read_state(self.layout) or {}
                if state.get("instances", {}).get(key, {}).get("state") in FINAL:
                    break
                time.sleep(0.2)
            if buffer:
                yield buffer


def _shown(instance: dict[str, Any], job: dict[str, str] | None, batch: bool) -> tuple[str, str]:
    """An instance's state and detail for `status`: squeue's (fresher than the watcher's
    last look), except once the watcher handled the job's end: then the watcher's
    (`restarting`, with why), not the ended job's CANCELLED with Slurm's reason "None". A job
    that ended before the watcher handled it is said in the executor's words, not Slurm's
    (`completed`, `cancelled`): `complete` for a batch worker's COMPLETED (exit code 0, as
    the watcher will judge it), else `exited`, as the local executor says of a task whose
    end nobody has handled yet."""
    word, detail = instance["state"], str(instance.get("detail") or "")
    if job is None or word in FINAL or word == "restarting":
        return word, detail
    if job["state"] == "RUNNING":
        return "running", job["nodes"]
    if job["state"] not in ALIVE:
        ended = f"job {instance['job_id']} ended {job['state']}"
        return ("complete" if batch and job["state"] == "COMPLETED" else "exited"), ended
    reason = job["reason"]
    return job["state"].lower(), "" if reason in ("None", "(null)") else reason


#: How long `stop` waits for its cancelled jobs to leave Slurm, and `start` for those of a
#: stopped deployment: Slurm's KillWait (30 s by default) between SIGTERM and SIGKILL, and the
#: job's clean-up while it shows COMPLETING.
GONE_TIMEOUT = 90.0


def _wait_gone(jobs: list[str]) -> list[str]:
    """Wait until Slurm no longer has these jobs running, pending or completing; those it
    still has after `GONE_TIMEOUT` seconds."""
    deadline = time.monotonic() + GONE_TIMEOUT
    while True:
        queued = commands.queue(jobs)
        alive = [j for j in jobs if queued.get(j, {}).get("state") in ALIVE]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.5)


def _to_submit(state: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(the instances `start` submits, those of them whose job ended unwatched, those whose
    job ended unwatched for good: complete or failed). A stopped or failed deployment's run
    gets a new session, so every instance is submitted, a complete one too: a unit of a
    resumed session ends only once the units that write its inputs have ended in that session
    (docs/runs.md), so downstream of a source left out waited for ever; a source whose inputs
    were all sent sends nothing twice and ends. A deployment that was never stopped (its
    watcher died) goes on in its session: only its instances that are not complete and whose
    job is gone, each ended job judged as the watcher judges it (`_ended_for_good`, marked in
    `state`): a batch source that had exited 0 was submitted again, a job and a restart spent
    on a worker with nothing left to do; one that exited with a configuration error was too,
    to fail again, its cause hidden. After such a failure nothing is submitted: the watcher
    would have stopped the other units, not restarted them."""
    instances = state["instances"]
    if state["state"] != "running":
        return set(instances), set(), set()
    alive = commands.queue([i["job_id"] for i in instances.values() if i["job_id"]])
    gone = {
        key
        for key, i in instances.items()
        if i["state"] != "complete" and alive.get(i["job_id"], {}).get("state") not in ALIVE
    }
    unhandled = {key for key in gone if instances[key]["state"] not in FINAL}
    ended = {key for key in unhandled if _ended_for_good(instances[key], state)}
    if any(instances[key]["state"] == "failed" for key in ended):
        return set(), set(), ended
    return gone - ended, unhandled - ended, ended


def _ended_for_good(instance: dict[str, Any], state: dict[str, Any]) -> bool:
    """Whether the instance's job, which ended while no watcher looked, ended for good as the
    watcher judges an end (`watch.judged`: a batch worker that exited 0 is complete, one that
    exited 78 failed); marks the instance so."""
    if not instance["job_id"]:
        return False
    final, code, what = exit_of(instance["job_id"], None)
    return judged(instance, state, final, code, what)


def _new_session(state: dict[str, Any]) -> None:
    """Count every instance's restarts from none, as the new session's job watcher counts
    them against `restart.attempts` (its restart trackers start empty). Counted on from the
    stopped session, `status` showed a unit restarted twice then with 2 restarts before any
    of this session's: a budget that read as nearly used up, and `exceeded the 2 restart
    attempts` beside 4 restarts. Every job each instance has had stays in `jobs`."""
    for instance in state["instances"].values():
        instance["restarts"] = 0
        instance.pop("restarted_at", None)


def _mark_stopped(state: dict[str, Any], ended: list[str]) -> dict[str, str]:
    """The instances and deployment as `stop` leaves them; instance key -> why, of those it
    found failed. A job that had ended before the stop, unseen by the watcher (stopped first),
    is judged as the watcher judges it (`watch.judged`): a batch worker that exited 0 is
    complete (taken for `stopped`, it was run again by `start`), one that exited 78 (a
    configuration error) `failed`, with its reason (taken for `stopped`, the failure was
    hidden: the run read as stopped by the user); any other end reads `stopped` (the next
    `start` runs it again). The deployment then ends as the watcher would have ended it
    (`watch.ended_as`: `failed` after such a failure); one that ended on its own stays so."""
    failed = {}
    for key, instance in state["instances"].items():
        if instance["state"] in FINAL:
            continue
        job = instance["job_id"]
        if job not in ended:
            instance.update(state="stopped", detail="cancelled by pipeline stop")
            continue
        final, code, what = exit_of(job, None)
        if not judged(instance, state, final, code, what):
            instance.update(state="stopped", detail=f"job {job} had ended before pipeline stop")
        elif instance["state"] == "failed":
            failed[key] = instance["detail"]
    if state["state"] not in ("complete", "failed"):
        state["state"] = ended_as(list(state["instances"].values()))
    return failed


def _stopped_message(
    now: str,
    before: str,
    cancelled: list[str],
    ended: list[str],
    completing: list[str],
    failed: list[dict[str, Any]],
) -> str:
    """What `stop` says: the jobs it cancelled, those that had ended, those Slurm has not
    ended yet, and each unit whose job had failed for good before the stop (`failed`: their
    instances), with why; or that there was nothing to stop."""
    if not cancelled and (now == "complete" or (not ended and before in FINAL)):
        # "0 Slurm job(s) cancelled" alone reads as if stop had failed to find the jobs
        return f"nothing to stop: the deployment had already ended ({now})"
    message = f"{len(cancelled)} Slurm job(s) cancelled"
    if cancelled:
        message += f" ({', '.join(cancelled)})"
    if ended:
        message += f"; {len(ended)} had already ended ({', '.join(ended)})"
    if completing:
        message += f"; {len(completing)} still completing in Slurm ({', '.join(completing)})"
    for instance in failed:
        # said, or the stop read as if every unit had run until it was stopped
        message += (
            f"; unit {instance['unit']} replica {instance['replica']} had failed before the "
            f"stop: {instance['detail']}"
        )
    return message


#: An instance's states while its job waits to be placed.
WAITING = ("new", "pending", "restarting")
#: An instance's states before the watcher has handled an end of its current job.
UNHANDLED = ("new", "pending")
#: squeue's reason before the scheduler has looked at a job, and the watcher's word for a job
#: it has not looked at yet.
_NOT_LOOKED_AT = ("None", "(null)", "", "submitted", "resubmitted")


def _never_starts(instance: dict[str, Any]) -> bool:
    """Slurm has said for a while that the instance's job cannot start (`watch.seen_alive`)."""
    return (
        instance["state"] == "pending"
        and bool(instance.get("cannot_start"))
        and bool(commands.never_starts(str(instance.get("detail") or "")))
    )


def _pending(state: dict[str, Any]) -> dict[str, str]:
    """Instance key -> Slurm's reason, of the instances whose job still waits."""
    pending = {}
    for key, instance in state.get("instances", {}).items():
        if instance["state"] in WAITING:
            reason = str(instance.get("detail") or "")
            pending[key] = "not scheduled yet" if reason in _NOT_LOOKED_AT else reason
    return pending


def _not_placed(state: dict[str, Any], wait: float) -> str:
    """What `deploy` and `start` say of the jobs not running when the wait ended: those
    restarting after their job failed, those whose job ended before the watcher handled it
    (`_handled`), and those still pending, each with why."""
    instances = state.get("instances", {})
    restarting = _restarting(state)
    exited = {k: i["detail"] for k, i in instances.items() if i["state"] == "exited"}
    said = ""
    if restarting:
        said += f"; {len(restarting)} restarting after their job failed: {_each(restarting)}"
    if exited:
        said += f"; {len(exited)} ended before the job watcher handled it: {_each(exited)}"
    pending = {k: r for k, r in _pending(state).items() if instances[k]["state"] in UNHANDLED}
    if pending:
        said += f"; {len(pending)} still pending after {wait:g} s: {_each(pending)}"
    return said


def _finished(ended: set[str], state: dict[str, Any]) -> str:
    """What `start` says of the instances it found complete (`_to_submit`): not submitted,
    they read as forgotten."""
    instances = state["instances"]
    said = {k: instances[k]["detail"] for k in sorted(ended) if instances[k]["state"] == "complete"}
    if not said:
        return ""
    return f"; {len(said)} had finished while no job watcher looked: {_each(said)}"


def _restarting(state: dict[str, Any]) -> dict[str, str]:
    """Instance key -> why, of the instances whose job failed and that the watcher restarts."""
    instances = state.get("instances", {})
    return {k: i["detail"] for k, i in instances.items() if i["state"] == "restarting"}


def _each(said: dict[str, str]) -> str:
    return ", ".join(f"{key} ({why})" for key, why in said.items())


def _handle_timeout(state: dict[str, Any]) -> float:
    """How long `deploy` waits for the watcher to handle a job's end: two of its looks, and
    the time one look may take on a busy login node."""
    return 2 * float(state.get("poll_interval", 2.0)) + 10.0


def _cannot_start(stuck: dict[str, dict[str, Any]], cancelled: int) -> str:
    """One sentence: which units' jobs Slurm cannot start, with its reason and what it means."""
    described = [
        f"unit {i['unit']} replica {i['replica']} (job {i['job_id']} is pending for "
        f"{i['detail']}: {commands.never_starts(i['detail'])})"
        for i in stuck.values()
    ]
    what = " and ".join([", ".join(described[:-1]), described[-1]] if described[:-1] else described)
    jobs = "the job" if len(stuck) == 1 else "the jobs"
    return (
        f"Slurm cannot start {jobs} of {what}, so the deployment's {cancelled} Slurm job(s) "
        "were cancelled"
    )


def _partition_warnings(partition: dict[str, Any]) -> list[str]:
    name, state = partition.get("name"), partition.get("state")
    if name is not None and not partition.get("checked"):
        return [f"partition {name} was not checked: {partition.get('why')}"]
    if state == "DOWN":
        return [f"partition {name} is DOWN: Slurm would hold its jobs, and deploy refuses it"]
    if state not in (None, "UP"):
        return [f"partition {name} is {state}: Slurm refuses new jobs"]
    return []


def _merged(readers: list[Iterator[str]], follow: bool) -> Iterator[str]:
    """The lines of each reader in turn; followed (readers that wait for more), as they come
    from any of them, each line whole."""
    if not follow or len(readers) == 1:
        for reader in readers:
            yield from reader
        return
    import queue
    import threading

    lines: queue.Queue[str | None] = queue.Queue()

    def drain(reader: Iterator[str]) -> None:
        try:
            for line in reader:
                lines.put(line)
        finally:
            lines.put(None)

    for reader in readers:
        threading.Thread(target=drain, args=(reader,), daemon=True).start()
    done = 0
    while done < len(readers):
        line = lines.get()
        if line is None:
            done += 1
        else:
            yield line


def _exported(script: str, name: str) -> str | None:
    """The value a job script exports as `name` (`plan.script`), None when it exports none."""
    for line in script.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        if line.startswith("export ") and key == name:
            words = shlex.split(value)
            return words[0] if words else None
    return None


def _running(state: dict[str, Any]) -> bool:
    if watcher_alive(state):
        return True
    ids = [i["job_id"] for i in state.get("instances", {}).values() if i.get("job_id")]
    with contextlib.suppress(SlurmError):
        return any(j["state"] in ALIVE for j in commands.queue(ids).values())
    return False
