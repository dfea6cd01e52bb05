"""The supervisor: runs a compiled Nomad job's allocations as subprocesses on this machine.

One allocation per group index (Count), laid out as a Nomad client lays it out; in each, the
prestart tasks first (non-sidecars must exit 0 before the main tasks start), then the main and
poststart tasks, then, once the main tasks are done (batch), the sidecars are stopped and the
poststop tasks run. A task that fails for good fails its allocation: its siblings are stopped,
and since nothing reschedules locally, the whole run stops and fails with a sentence saying
which task failed and why.

Every task runs in its own session (process group) so that stopping it reaches the processes
it started, and a terminal's Ctrl-C reaches only the supervisor, which then stops the tasks in
order: KillSignal, KillTimeout, SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asapo_pipelines import interrupts, storage
from asapo_pipelines.launchplan.restart import RestartTracker
from asapo_pipelines.launchplan.rundir import STATE_FILE, process_start
from asapo_pipelines.local import environment as envmod
from asapo_pipelines.local.errors import LocalRunError
from asapo_pipelines.local.job import GroupSpec, JobSpec, TaskSpec, read_job
from asapo_pipelines.local.layout import (
    ALLOC,
    JOB_FILE,
    LOCK_FILE,
    PREVIOUS_ALLOC,
    AllocDirs,
    alloc_dirs,
)
from asapo_pipelines.local.logs import RotatingLog, problem_line, pump
from asapo_pipelines.local.state import (
    REPLAY,
    StateNotWritten,
    replay_record,
    reserve_space,
    wait_groups_gone,
    write_last_state,
    write_state,
)
from asapo_pipelines.worker.launch import RUN_ENV
from asapo_pipelines.worker.placement import EXECUTOR_ENV

#: per-unit counters from the workers' status stream: {"group[index]" or "group": {...}}
StatusReader = Callable[[], Mapping[str, Mapping[str, Any]]]
EXIT_CODES_KEPT = 20
#: Exit codes that say "a restart cannot fix this": the command was called wrongly (2) or the
#: configuration is wrong (78, EX_CONFIG: bad params, a missing directory, a unit that does
#: not import). Such a task fails at once with its reason instead of being restarted.
CONFIG_EXIT_CODES = (2, 78)
#: Limits of one machine, each overridable by an environment variable of the same name.
MAX_UNITS_ENV = "ASAPO_PIPELINES_MAX_UNITS"
MAX_PROCESSES_ENV = "ASAPO_PIPELINES_MAX_PROCESSES"
DEFAULT_MAX_UNITS = 500
DEFAULT_MAX_PROCESSES = 256


@dataclass
class ExecOptions:
    #: the environment tasks inherit (default: this process's); NOMAD_* and Env go on top
    environ: Mapping[str, str] | None = None
    #: called with one sentence per event (task started, exited, restarting, failed)
    on_event: Callable[[str], None] | None = None
    #: called with the state dict after every tick that changed it (the live table)
    on_update: Callable[[dict[str, Any]], None] | None = None
    #: called on the supervisor's thread with (task label, "LEVEL message") for each WARNING,
    #: ERROR or CRITICAL line a task's worker logs, in order (a foreground run shows them)
    on_log: Callable[[str, str], None] | None = None
    status_reader: StatusReader | None = None
    pipeline_file: str | None = None
    #: the `--data-dir` the run was started with (None without one), for the stop command a
    #: refused start suggests (`control.already_running`)
    data_dir: str | None = None
    detached: bool = False
    tick: float = 0.05
    handle_signals: bool = True
    #: called once this supervisor holds the run directory's lock and its first state, naming
    #: its pid, is written: `pipeline run` then lets other starts, and `stop`, look at the run
    #: (`control.StartLock`), as `run --detach` does once its supervisor wrote that state
    on_started: Callable[[], None] | None = None
    #: the tasks of a lost run that `pipeline run` stopped before it started this supervisor
    #: (`control.Orphans.record`): it stops them first, to end the lost session from their
    #: final status records, and this supervisor says it as if it had stopped them
    stopped_orphans: Mapping[str, Any] | None = None


@dataclass
class RunResult:
    status: str  # complete | failed | stopped
    message: str
    state: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return {"complete": 0, "stopped": 130}.get(self.status, 1)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def count_task_processes() -> int:
    """Processes of local pipeline runs on this machine (their environment names a Nomad
    allocation, as the local executor sets it); those of other users are not readable and
    not counted."""
    count = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if b"\0NOMAD_ALLOC_ID=" in b"\0" + fh.read():
                    count += 1
        except OSError:
            continue
    return count


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


@dataclass
class TaskRun:
    spec: TaskSpec
    alloc: Alloc
    state: str = "pending"  # pending running restarting complete failed stopping stopped
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    message: str = ""
    next_start: float = 0.0
    kill_deadline: float | None = None
    started_wall: float | None = None
    tracker: RestartTracker | None = None
    pumps: list[threading.Thread] = field(default_factory=list)
    #: every process group this task ran as, to make sure none outlives the run
    pgids: list[int] = field(default_factory=list)
    sinks: tuple[RotatingLog, RotatingLog] | None = None
    prepared: bool = False
    #: start time of the process (with the pid it names it for good; see control.live_tasks)
    pid_start: int | None = None
    log_error_reported: bool = False

    @property
    def label(self) -> str:
        unit = f"{self.spec.group}[{self.alloc.index}]"
        return unit if self.spec.name == self.spec.group else f"{unit}/{self.spec.name}"

    @property
    def alive(self) -> bool:
        return self.popen is not None

    @property
    def done(self) -> bool:
        return self.state in ("complete", "failed", "stopped")

    # -- starting ------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        ex = self.alloc.executor
        spec, dirs = self.spec, self.alloc.dirs
        where = f"task {spec.name} of unit {spec.group}[{self.alloc.index}]"
        environ = ex.environ
        runtime = envmod.nomad_env(ex.job, spec, self.alloc.index, self.alloc.id, dirs)
        if spec.driver == "docker":
            runtime.update(
                NOMAD_ALLOC_DIR="/alloc", NOMAD_TASK_DIR="/local", NOMAD_SECRETS_DIR="/secrets"
            )
        values = envmod.node_values(ex.job, spec, runtime)
        # NOMAD_* alone would make the task's results say a Nomad allocation computed them
        env = {**environ, **runtime, EXECUTOR_ENV: "local"}
        for key, value in spec.env.items():
            env[key] = envmod.interpolate(value, values, environ)
        try:
            if not self.prepared:
                envmod.fetch_artifacts(spec, dirs, values, environ)
                self.prepared = True
            env.update(envmod.render_templates(spec, dirs, values, environ))
            argv = self._argv(env, values, where)
        except LocalRunError as exc:
            self._fail_now(now, exc.message)
            return
        except OSError as exc:
            self._fail_now(now, f"{where} cannot be prepared: {exc}")
            return
        if self.sinks is None:
            self.sinks = (
                RotatingLog(
                    dirs.logs, spec.name, "stdout", spec.log_max_files, spec.log_max_file_size_mb
                ),
                RotatingLog(
                    dirs.logs, spec.name, "stderr", spec.log_max_files, spec.log_max_file_size_mb
                ),
            )
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=dirs.task(spec.name),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            self._fail_now(now, f"{where} cannot start: {exc.strerror or exc}")
            return
        finally:
            os.close(out_w)
            os.close(err_w)
        # workers log on stderr
        self.pumps = [pump(out_r, self.sinks[0]), pump(err_r, self.sinks[1], ex.watch(self.label))]
        self.pgids.append(self.popen.pid)
        self.pid_start = process_start(self.popen.pid)
        self.state = "running"
        self.started_wall = time.time()
        if self.tracker is None:
            policy = spec.restart or self.alloc.group.restart
            # Nomad restarts a service's main task and sidecars whatever their exit code;
            # batch tasks and non-sidecar lifecycle tasks are done when they exit 0.
            on_success = ex.job.type == "service" and (spec.is_main or spec.sidecar)
            self.tracker = RestartTracker(policy, restart_on_success=on_success, now=now)
        again = f" (restart {self.restarts})" if self.restarts else ""
        ex.event(f"{self.label} started, pid {self.popen.pid}{again}")

    def _argv(self, env: dict[str, str], values: Mapping[str, str], where: str) -> list[str]:
        spec, dirs = self.spec, self.alloc.dirs
        environ = self.alloc.executor.environ
        args = [envmod.interpolate(a, values, environ) for a in spec.args]
        if spec.driver == "docker":
            docker = shutil.which("docker", path=env.get("PATH"))
            if docker is None:
                raise LocalRunError(f"{where} uses the docker driver and docker is not installed")
            # values travel in the environment (`--env NAME`), never on the command line
            argv = [
                docker,
                "run",
                "--rm",
                "--init",
                "--name",
                f"{self.alloc.executor.job.id}-{self.alloc.id[:8]}-{spec.name}",
                "-v",
                f"{dirs.shared}:/alloc",
                "-v",
                f"{dirs.local(spec.name)}:/local",
                "-v",
                f"{dirs.secrets(spec.name)}:/secrets",
            ]
            names = {*spec.env, *(k for k in env if k.startswith("NOMAD_"))}
            for name in sorted(names):
                argv += ["--env", name]
            argv.append(str(spec.image))
            if spec.command:
                argv.append(envmod.interpolate(spec.command, values, environ))
            return argv + args
        command = envmod.interpolate(spec.command, values, environ)
        return [envmod.resolve_command(command, env, dirs.task(spec.name), where), *args]

    def _fail_now(self, now: float, message: str) -> None:
        self.state = "failed"
        self.message = message
        self.alloc.executor.event(message)

    # -- watching ------------------------------------------------------------------------------

    def last_error(self) -> str:
        return self.sinks[1].last_error() if self.sinks is not None else ""

    def _check_logs(self) -> None:
        if self.sinks is None or self.log_error_reported:
            return
        for sink in self.sinks:
            if sink.error is not None:
                self.log_error_reported = True
                self.alloc.executor.event(
                    f"{self.label}: "
                    + storage.describe(f"writing its {sink.stream} log", sink.dir, sink.error)
                    + "; its output is dropped until then"
                )
                return

    def step(self, now: float) -> None:
        self._check_logs()
        if self.popen is not None:
            code = self.popen.poll()
            if code is None:
                if self.kill_deadline is not None and now >= self.kill_deadline:
                    _signal_group(self.popen.pid, signal.SIGKILL)
                    self.kill_deadline = None
                    if not self.alloc.executor.killed_at_once:
                        self._said_killed()
                return
            self._exited(code, now)
        elif self.state == "restarting" and now >= self.next_start:
            self.restarts += 1
            self.start(now)

    def _said_killed(self) -> None:
        """Why a stopped task shows `sig9`: without a word, its unit's author could not tell
        a worker that drained from one that never got back from the unit's code."""
        name = signal.Signals(self.spec.kill_signal).name
        self.alloc.executor.event(
            f"{self.label} did not exit within {self.spec.kill_timeout:g}s of {name}, so it was "
            "killed (SIGKILL): its unit was still busy (a process() or run() that did not "
            "return, or a thread it started that did not end)"
        )

    def _exited(self, code: int, now: float) -> None:
        assert self.popen is not None
        # whatever the task left behind in its process group goes with it
        _signal_group(self.popen.pid, signal.SIGKILL)
        self.popen = None
        for thread in self.pumps:
            thread.join(timeout=2)
        self.pumps = []
        # what it logged last comes before the sentence saying it exited
        self.alloc.executor.relay_logs()
        self.exit_codes = [*self.exit_codes, code][-EXIT_CODES_KEPT:]
        self.kill_deadline = None
        if self.state == "stopping":
            self.state = "stopped"
            return
        assert self.tracker is not None
        how = describe_exit(code)
        if code in CONFIG_EXIT_CODES:
            # the worker refused to start for a reason no restart changes (its configuration,
            # a damaged store, a file it may not write): five restarts would say it five times.
            # Not "a configuration error": the reason says what it is, and often it is none
            self.state = "failed"
            reason = self.last_error() or f"it {how}"
            self.message = (
                f"{self.label} failed for good: {reason} (exit code {code}: a restart cannot "
                "fix it, so it was not restarted)"
            )
            self.alloc.executor.event(self.message)
            return
        decision = self.tracker.on_exit(code, now)
        if decision.action == "complete":
            self.state = "complete"
            self.message = ""
            self.alloc.executor.event(f"{self.label} {how}: complete")
        elif decision.action == "restart":
            self.state = "restarting"
            self.next_start = now + decision.delay
            self.message = f"{how}; restarting in {decision.delay:.1f}s"
            self.alloc.executor.event(f"{self.label} {self.message}")
        else:
            self.state = "failed"
            plural = "" if self.restarts == 1 else "s"
            policy = self.spec.restart or self.alloc.group.restart
            self.message = (
                f"{self.label} failed for good: it {how} after {self.restarts} restart{plural} "
                f"and {decision.reason} ({policy.describe()})"
            )
            last = self.last_error() if code != 0 else ""  # an exit 0 reported no error
            if last:
                self.message += f"; its last error: {last}"
            self.alloc.executor.event(self.message)

    def stop(self, now: float) -> None:
        """Ask the task to stop (KillSignal), SIGKILL after KillTimeout; a task not running is
        simply not started again."""
        if self.popen is not None:
            if self.state != "stopping":
                self.state = "stopping"
                _signal_group(self.popen.pid, self.spec.kill_signal)
                self.kill_deadline = now + self.spec.kill_timeout
        elif not self.done:
            self.state = "stopped"

    def kill_now(self) -> None:
        if self.popen is not None:
            self.state = "stopping"
            _signal_group(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=5)
            self._exited(
                self.popen.returncode if self.popen.returncode is not None else -9, time.monotonic()
            )

    def record(self) -> dict[str, Any]:
        return {
            "unit": f"{self.spec.group}[{self.alloc.index}]",
            "group": self.spec.group,
            "index": self.alloc.index,
            "task": self.spec.name,
            "alloc_id": self.alloc.id,
            "lifecycle": self.spec.hook or "main",
            "sidecar": self.spec.sidecar,
            "state": self.state,
            "pid": self.popen.pid if self.popen is not None else None,
            "pid_start": self.pid_start if self.popen is not None else None,
            "restarts": self.restarts,
            "exit_codes": list(self.exit_codes),
            "message": self.message,
            "started": self.started_wall,
            "logs": str(self.alloc.dirs.logs),
        }


@dataclass
class Alloc:
    executor: LocalExecutor
    group: GroupSpec
    index: int
    id: str
    dirs: AllocDirs
    tasks: list[TaskRun] = field(default_factory=list)
    status: str = "pending"  # pending running complete failing failed stopping stopped
    phase: str = "prestart"  # prestart main poststop done
    message: str = ""

    def of(self, *hooks: str | None, sidecar: bool | None = None) -> list[TaskRun]:
        return [
            t
            for t in self.tasks
            if t.spec.hook in hooks and (sidecar is None or t.spec.sidecar == sidecar)
        ]

    def step(self, now: float) -> None:
        for task in self.tasks:
            task.step(now)
        if self.status in ("complete", "failed", "stopped"):
            return
        if self.status in ("failing", "stopping"):
            for task in self.tasks:
                task.stop(now)
            if not any(t.alive for t in self.tasks):
                self.status = "failed" if self.status == "failing" else "stopped"
            return
        failed = [t for t in self.tasks if t.state == "failed"]
        if failed:
            self.status = "failing"
            self.message = failed[0].message
            for task in self.tasks:
                task.stop(now)
            return
        self.status = "running"
        executor = self.executor
        if self.phase == "prestart":
            for task in self.of("prestart"):
                if task.state == "pending" and not executor.stop_requested():
                    task.start(now)
            if all(t.state == "complete" for t in self.of("prestart", sidecar=False)):
                self.phase = "main"
        if self.phase == "main":
            for task in self.of(None, "poststart"):
                if task.state == "pending" and not executor.stop_requested():
                    task.start(now)
            if all(t.state == "complete" for t in self.of(None)):
                # the main work is done: sidecars are stopped, then poststop tasks run
                for task in self.tasks:
                    if task.spec.sidecar:
                        task.stop(now)
                self.phase = "poststop"
        if self.phase == "poststop":
            if any(t.alive for t in self.tasks if t.spec.hook != "poststop"):
                return
            for task in self.of("poststop"):
                if task.state == "pending" and not executor.stop_requested():
                    task.start(now)
            if all(t.done for t in self.tasks) and not any(t.alive for t in self.tasks):
                self.phase = "done"
                self.status = "complete"

    def stop(self, now: float) -> None:
        if self.status not in ("complete", "failed", "stopped", "failing"):
            self.status = "stopping"
        for task in self.tasks:
            task.stop(now)


class LocalExecutor:
    """Runs `job` (Nomad's `{"Job": {...}}`) under `run_dir` until it completes, fails or is
    stopped (`request_stop`, SIGINT, SIGTERM)."""

    def __init__(
        self, job: Mapping[str, Any], run_dir: Path, options: ExecOptions | None = None
    ) -> None:
        self.payload = dict(job)
        self.job: JobSpec = read_job(job)
        self.run_dir = Path(run_dir)
        self.options = options or ExecOptions()
        self.environ: dict[str, str] = dict(
            os.environ if self.options.environ is None else self.options.environ
        )
        # The installation running `pipeline run` is the one with the pipeline's units: its
        # scripts (`pipeline` itself) are found even when its environment is not activated.
        bindir = os.path.dirname(sys.executable)
        path = self.environ.get("PATH", os.defpath)
        if bindir and bindir not in path.split(os.pathsep):
            self.environ["PATH"] = os.pathsep.join([bindir, path])
        self._stop_reason: str | None = None
        self._force = False
        #: whether asking again killed tasks still draining: the run's end says so
        self.killed_at_once = False
        self._lock_fd: int | None = None
        #: (task label, "LEVEL message") logged by the tasks, for `on_log` (see `watch`)
        self._logged: deque[tuple[str, str]] = deque()
        self.allocs: list[Alloc] = []
        self.started_wall = time.time()
        #: the tasks of a lost run this supervisor stopped before starting (`Orphans.record`)
        self.stopped_orphans: dict[str, Any] | None = None
        self._precheck()

    def _precheck(self) -> None:
        """Refuse before starting anything what cannot run here (one sentence each)."""
        self._check_limits()
        for group in self.job.groups:
            for task in group.tasks:
                where = f"task {task.name} of unit {group.name}"
                if task.driver == "docker" and shutil.which("docker") is None:
                    raise LocalRunError(
                        f"{where} uses the docker driver, and the local executor cannot run "
                        "docker tasks without docker installed; use driver raw_exec or exec, "
                        "or deploy the pipeline to Nomad"
                    )
                if task.driver != "docker" and "${" not in task.command and "/" not in task.command:
                    envmod.resolve_command(task.command, self.environ, self.run_dir, where)

    def _limit(self, name: str, default: int) -> int:
        raw = self.environ.get(name) or os.environ.get(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise LocalRunError(f"{name} must be a whole number, not {raw!r}") from None
        if value < 1:
            raise LocalRunError(f"{name} must be at least 1, not {value}")
        return value

    def _check_limits(self) -> None:
        """A pipeline of thousands of units spawned processes for minutes and took the machine's
        memory with it: refuse what is past the limits before starting anything."""
        units = sum(g.count for g in self.job.groups)
        max_units = self._limit(MAX_UNITS_ENV, DEFAULT_MAX_UNITS)
        if units > max_units:
            raise LocalRunError(
                f"job {self.job.id} has {units} units (counting replicas), more than the "
                f"{max_units} the local executor runs; split the pipeline, or set "
                f"{MAX_UNITS_ENV} if this machine can take it"
            )
        tasks = sum(g.count * len(g.tasks) for g in self.job.groups)
        running = count_task_processes()
        max_processes = self._limit(MAX_PROCESSES_ENV, DEFAULT_MAX_PROCESSES)
        if tasks + running > max_processes:
            raise LocalRunError(
                f"job {self.job.id} needs {tasks} processes and {running} pipeline task "
                f"processes already run on this machine, more than the {max_processes} allowed "
                f"per machine; stop other runs, or set {MAX_PROCESSES_ENV} if this machine "
                "can take it"
            )

    # -- control -------------------------------------------------------------------------------

    def stop_requested(self) -> bool:
        return self._stop_reason is not None

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop every task (KillSignal, then SIGKILL after KillTimeout); asked a second time,
        SIGKILL at once (a second Ctrl-C when a task takes too long to drain)."""
        if self._stop_reason is None:
            self._stop_reason = reason
        else:
            self._force = True

    def event(self, message: str) -> None:
        if self.options.on_event is not None:
            self.options.on_event(message)

    def watch(self, label: str) -> Callable[[bytes], None] | None:
        """What the log pump of task `label` hands each line to when the run relays its
        workers' problems (`on_log`): the pump's thread queues them, `relay_logs` passes them
        on from the supervisor's thread, the one that prints."""
        if self.options.on_log is None:
            return None

        def queue(line: bytes) -> None:
            found = problem_line(line)
            if found is not None:
                self._logged.append((label, f"{found[0]} {found[1]}"))

        return queue

    def relay_logs(self) -> None:
        on_log = self.options.on_log
        while self._logged and on_log is not None:
            on_log(*self._logged.popleft())

    def _acquire(self) -> None:
        from asapo_pipelines.local.control import already_running, refused_file, stop_orphans

        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LocalRunError(storage.describe("the run directory", self.run_dir, exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # the file this supervisor was started for: the refusal names the other file a
            # supervisor that took the run directory first runs (`already_running`)
            mine = refused_file(self.options.pipeline_file)
            raise already_running(
                self.job.id, self.run_dir, mine, mine, self.options.data_dir
            ) from None
        self._lock_fd = fd
        # A supervisor killed outright (SIGKILL, OOM) left its tasks running: they would read
        # the same streams as ours and write every result twice. Stop them first.

        try:
            found = stop_orphans(self.run_dir, self.job)
        except BaseException:
            self._release()
            raise
        record = found.record() if found is not None else self.options.stopped_orphans
        if record:
            # the state keeps it: `run --detach` and `pipeline status` say it from there, the
            # way a foreground run says it here, so whoever looks sees why outputs paused
            self.stopped_orphans = dict(record)
            self.event(str(record.get("message") or ""))

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self, status: str, message: str = "") -> dict[str, Any]:
        return {
            "job": self.job.id,
            "name": self.job.name,
            "type": self.job.type,
            "status": status,
            "message": message,
            "pid": os.getpid(),
            "detached": self.options.detached,
            "pipeline_file": self.options.pipeline_file,
            # the run its tasks work for: whoever stops them after this supervisor is lost
            # names it (`control.stop_orphans`)
            "run": self.environ.get(RUN_ENV),
            REPLAY: replay_record(self.job.meta),
            "run_dir": str(self.run_dir),
            "stopped_orphans": self.stopped_orphans,
            "started": self.started_wall,
            "updated": time.time(),
            "finished": time.time() if status in ("complete", "failed", "stopped") else None,
            "units": [t.record() for a in self.allocs for t in a.tasks],
        }

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> RunResult:
        self._acquire()
        previous: dict[int, Any] = {}
        try:
            if (
                self.options.handle_signals
                and threading.current_thread() is threading.main_thread()
            ):
                # a closed terminal (SIGHUP) must not leave the tasks, each in its own session,
                # running without their supervisor; a detached supervisor has no terminal
                handled = [signal.SIGINT, signal.SIGTERM]
                if not self.options.detached:
                    handled.append(signal.SIGHUP)
                for sig in handled:
                    previous[sig] = signal.signal(
                        sig, lambda s, _f: self.request_stop(signal.Signals(s).name)
                    )
                if interrupts.raised_once():
                    # a Ctrl-C of the command came before these handlers and its
                    # KeyboardInterrupt was lost on its way (`interrupts.raise_if_lost`):
                    # raised once, it would not come again, and a watching run never ended
                    self.request_stop(signal.SIGINT.name)
            try:
                return self._run()
            except (OSError, LocalRunError) as exc:
                # the run directory was deleted, or its disk is full or gone read-only: an
                # error of the run, said in one sentence. The tasks are stopped as a stop
                # request stops them, so that units close what they write (a NeXus file left
                # open for writing is unreadable); nothing is acknowledged that they did not
                # make durable.
                deleted = not self.run_dir.is_dir()
                cause = self._cause(exc, deleted)
                self._stop_all(cause)
                if deleted:
                    raise LocalRunError(f"{cause}; its tasks were stopped") from None
                self._record_failure(cause)
                raise LocalRunError(cause) from None
        finally:
            pgids = []
            for alloc in self.allocs:
                for task in alloc.tasks:
                    task.kill_now()
                    pgids.extend(task.pgids)
            # what a task started in its process group was sent SIGKILL with it: wait for it
            wait_groups_gone(pgids)
            for alloc in self.allocs:
                for task in alloc.tasks:
                    for thread in task.pumps:
                        thread.join(timeout=2)
                    for sink in task.sinks or ():
                        sink.close()
            self.relay_logs()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._release()

    def _cause(self, exc: OSError | LocalRunError, deleted: bool) -> str:
        """Why the run cannot go on, in one sentence, naming the run directory when it is gone."""
        if not deleted:
            if isinstance(exc, LocalRunError):
                return exc.message
            return storage.describe("the run directory", self.run_dir, exc)
        if isinstance(exc, StateNotWritten):
            detail = f"writing {exc.path}: {storage.reason(exc.error)}"
        elif isinstance(exc, OSError):
            detail = f"{exc.filename or self.run_dir}: {storage.reason(exc)}"
        else:
            detail = exc.message
        return (
            f"the run directory {self.run_dir} was deleted while job {self.job.id} ran ({detail})"
        )

    def _record_failure(self, cause: str) -> None:
        """Leave `cause` in the state file, in the space reserved for its last write: a full
        disk stopped the run, and `pipeline status` must say so, not that the supervisor was
        lost. Best effort: the run has failed already, and the sentence goes to its caller."""
        state = self.snapshot("failed", cause)
        try:
            write_last_state(self.run_dir / STATE_FILE, state)
        except LocalRunError:
            return
        if self.options.on_update is not None:
            self.options.on_update(state)

    def _stop_all(self, cause: str) -> None:
        """Stop every task as `request_stop` does (KillSignal, KillTimeout, then SIGKILL; asked
        again, SIGKILL at once) for a run that cannot go on; the state file is not written
        while they stop (that is what failed; `_record_failure` writes the run's end once, in
        the space reserved for it), but the live table shows the tasks stopping."""
        if not any(t.alive for a in self.allocs for t in a.tasks):
            return
        if self._stop_reason is None:
            self._stop_reason = cause  # a Ctrl-C from now on kills at once
        self.event(f"stopping all tasks: {cause}; ask again to kill them at once")
        now = time.monotonic()
        for alloc in self.allocs:
            alloc.stop(now)
        last_fp: Any = None
        while any(t.alive for a in self.allocs for t in a.tasks):
            time.sleep(self.options.tick)
            now = time.monotonic()
            if self._force:
                self._kill_draining(now)
            for alloc in self.allocs:
                alloc.step(now)
            self.relay_logs()
            fingerprint = self._fingerprint()
            if fingerprint != last_fp and self.options.on_update is not None:
                self.options.on_update(self.snapshot("stopping", cause))
            last_fp = fingerprint

    def _kill_draining(self, now: float) -> None:
        """SIGKILL in this step every task still draining after its KillSignal."""
        for alloc in self.allocs:
            for task in alloc.tasks:
                if task.kill_deadline is not None:
                    task.kill_deadline = now
                    self.killed_at_once = True

    def _stopped_message(self) -> str:
        """The end of a stopped run: the reason it was stopped for, or, when a second stop
        killed tasks still draining, that SIGKILL (`status` then shows `sig9`: the tasks did
        not stop as the first stop asked)."""
        if self.killed_at_once:
            return f"job {self.job.id} stopped (SIGKILL: a stop was already under way)"
        return f"job {self.job.id} stopped ({self._stop_reason})"

    def _fingerprint(self) -> list[tuple[str, int, int | None]]:
        return [
            (t.state, t.restarts, t.popen.pid if t.popen else None)
            for a in self.allocs
            for t in a.tasks
        ]

    def _setup(self) -> None:
        # A new run gets fresh allocation directories, as Nomad gives a new allocation; the
        # last run's are kept beside them (logs to look back at), older ones go. Its last state
        # goes with them: which unit's logs are where, and how that session ended.
        current, previous = self.run_dir / ALLOC, self.run_dir / PREVIOUS_ALLOC
        if current.exists():
            shutil.rmtree(previous, ignore_errors=True)
            current.rename(previous)
            with contextlib.suppress(OSError):
                shutil.copyfile(self.run_dir / STATE_FILE, previous / STATE_FILE)
        (self.run_dir / JOB_FILE).write_text(json.dumps(self.payload, indent=1))
        for group in self.job.groups:
            for index in range(group.count):
                dirs = alloc_dirs(self.run_dir, group.name, index)
                dirs.create([t.name for t in group.tasks])
                alloc = Alloc(self, group, index, str(uuid.uuid4()), dirs)
                alloc.tasks = [TaskRun(spec, alloc) for spec in group.tasks]
                self.allocs.append(alloc)

    def _write(self, status: str, message: str = "") -> dict[str, Any]:
        state = self.snapshot(status, message)
        write_state(self.run_dir / STATE_FILE, state)
        return state

    def _run(self) -> RunResult:
        self._setup()
        # a full disk stops the run; the space for the state saying so is taken now
        reserve_space(self.run_dir / STATE_FILE, self.snapshot("running"))
        status, message = "running", ""
        state = self._write(status)
        if self.options.on_started is not None:
            self.options.on_started()
        last_write = 0.0
        last_fp: Any = None
        while True:
            now = time.monotonic()
            if self._stop_reason is not None and status == "running":
                status, message = "stopping", f"stopping ({self._stop_reason})"
                self.event(
                    f"stopping all tasks ({self._stop_reason}); ask again to kill them at once"
                )
                for alloc in self.allocs:
                    alloc.stop(now)
            if self._force and status == "stopping":
                self._kill_draining(now)
            for alloc in self.allocs:
                alloc.step(now)
            self.relay_logs()
            failed = [a for a in self.allocs if a.status in ("failing", "failed")]
            if failed and status == "running":
                status, message = "stopping", failed[0].message
                self.event("stopping the other tasks after a failure")
                for alloc in self.allocs:
                    alloc.stop(now)
            final = None
            terminal = all(a.status in ("complete", "failed", "stopped") for a in self.allocs)
            if status == "running" and self.job.type == "batch" and terminal:
                final = ("complete", f"job {self.job.id} completed: every task exited 0")
            elif status == "stopping" and terminal:
                final = ("failed", message) if failed else ("stopped", self._stopped_message())
            if final is not None:
                state = self.snapshot(*final)
                write_last_state(self.run_dir / STATE_FILE, state)
                if self.options.on_update is not None:
                    self.options.on_update(state)
                return RunResult(final[0], final[1], state)
            fingerprint = self._fingerprint()
            if fingerprint != last_fp or now - last_write >= 1.0:
                state = self._write(status, message)
                last_write, last_fp = now, fingerprint
                if self.options.on_update is not None:
                    self.options.on_update(state)
            time.sleep(self.options.tick)
