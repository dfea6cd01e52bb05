"""Runs seen from outside their supervisor: start one detached, find whether its supervisor is
alive (it holds `supervisor.lock`), stop it, read its status and its task logs.

Liveness is decided by the lock, not by the pid in the state file, so a recycled pid is never
signalled by mistake and a supervisor killed with SIGKILL is recognised as gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asapo_pipelines import storage
from asapo_pipelines.launchplan.rundir import (
    FINAL,
    START_LOCK,
    STATE_FILE,
    lock_holder,
    observed,
    pid_alive,
    start_under_way,
    still_ours,
    supervisor_alive,
)
from asapo_pipelines.local.errors import LocalRunError
from asapo_pipelines.local.layout import JOB_FILE, LOCK_FILE, PREVIOUS_ALLOC, SUPERVISOR_LOG
from asapo_pipelines.local.logs import log_files, read_log
from asapo_pipelines.local.state import (
    REPLAY,
    group_members,
    read_state,
    wait_groups_gone,
    write_last_state,
)

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.local.job import JobSpec

#: What the refusal of a second start says when the start that holds the run directory has
#: not written its supervisor's pid yet (`lock_holder`).
NOT_KNOWN_YET = " (it is being started: its supervisor pid is not known yet)"


def already_running(
    job_id: str,
    run_dir: Path,
    shown: str | None = None,
    mine: str | None = None,
    data_dir: str | None = None,
) -> LocalRunError:
    """The refusal of a second start while a supervisor runs the job (named as its state
    names it: the run directory's name may also name the pipeline file); `shown`: the file
    as the user named it, for the stop command to copy; `mine`: that file's path;
    `data_dir`: the `--data-dir` the refused command was given, which the stop command
    repeats (without it `pipeline stop` looks in the default data directory). A run of
    another file of the same `pipeline:` name, started at the same moment into the same run
    directory (`launchplan.rundir.file_run_dir` could not yet tell them apart), is stopped
    through that file: `pipeline stop` of the refused one's own went to its `deploy:`
    section's executor (Nomad), not to the local run that holds the name."""
    state: dict[str, Any] = {}
    with contextlib.suppress(LocalRunError):
        state = read_state(Path(run_dir) / STATE_FILE)
    pid = lock_holder(state)
    holder = _holder_file(state if pid else {}, Path(run_dir))
    if holder is not None and mine is not None and Path(holder) != Path(mine).resolve():
        shown, started = holder, f" from {holder}"
    else:
        started = ""
    from asapo_pipelines.local.target import logs_where

    if shown:
        stop = f"pipeline stop {logs_where(shown, data_dir)}"
    else:  # a compiled job's refusal names no file (`refused_file`): its run directory
        # (`pipeline stop` of no file looks for a pipeline file in the working directory)
        stop = f"pipeline stop --run-dir {shlex.quote(str(run_dir))}"
    return LocalRunError(
        f"job {state.get('job') or job_id} is already running locally{started}"
        + (f" (supervisor pid {pid})" if pid else NOT_KNOWN_YET)
        + f"; stop it first with `{stop}`"
    )


def refused_file(file: str | Path | None) -> str | None:
    """`file`, the start's, for `already_running` to tell from the file whose run holds the
    run directory; None for a compiled job (`*.json`), whose refusal names no file."""
    return str(file) if file and Path(file).suffix != ".json" else None


def _holder_file(state: Mapping[str, Any], run_dir: Path) -> str | None:
    """The pipeline file of the start that holds `run_dir`: its live supervisor's state says
    it, else the start under way wrote it into `START_LOCK` (`StartLock`); None when neither
    can tell yet (a start between taking the lock and writing its file)."""
    recorded = state.get("pipeline_file")
    if not recorded:
        try:
            recorded = (run_dir / START_LOCK).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
    if not recorded or Path(str(recorded)).suffix == ".json":  # a compiled job: no file
        return None
    return str(recorded)


class StartLock:
    """A `pipeline run`'s hold on starting its job (`START_LOCK`), taken before it looks
    whether the job runs and given up once its supervisor holds the run (`release`).

    Without it a start checked the supervisor's lock and recorded its session as two steps:
    two starts at once both passed the check (the lock file did not exist yet, or the first
    start had let go of it for its supervisor to take), and the one refused later, by the
    supervisor's lock, had already written into the winner's run: a session of its own, the
    winner's session ended `lost`, or a new run. Holding this from the check to the
    supervisor's start, the loser is refused before it reads or writes anything."""

    def __init__(
        self,
        job_id: str,
        run_dir: Path,
        shown: str | None = None,
        mine: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        """`shown`: the file as the user named it; `mine`: its path, written into the lock
        for a start refused meanwhile to name (`already_running`); `data_dir`: the start's
        `--data-dir`, for its refusal's stop command."""
        self.run_dir = Path(run_dir)
        #: the directories this start made (the run directory and those above it that did
        #: not exist): a start refused or failed before its supervisor wrote anything there
        #: leaves none of them behind (`release`)
        self.made = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
        self._fd: int | None = None
        while self._fd is None:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise already_running(job_id, self.run_dir, shown, mine, data_dir) from None
            if self._still_there(fd):
                self._fd = fd
            else:  # a start that let go of it removed it first: take the new one
                os.close(fd)
        self._say_whose(mine)

    def _say_whose(self, mine: str | None) -> None:
        """Write the starting file's path into the lock (emptied by `release`): its state,
        which says it too, is written only once its supervisor runs."""
        assert self._fd is not None
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            if mine:
                os.pwrite(self._fd, str(Path(mine).resolve()).encode(), 0)

    def _open(self) -> int:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            return os.open(self.run_dir / START_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return self._open()  # removed between the two by a start that let go of it
        except OSError as exc:
            raise LocalRunError(storage.describe("the run directory", self.run_dir, exc)) from None

    def _still_there(self, fd: int) -> bool:
        """Whether the locked file is still the one at its path (not removed by `release`)."""
        try:
            return os.stat(self.run_dir / START_LOCK).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Let other starts (and `stop`) go on: called once the supervisor holds the run, or
        once a failed start has recorded how it ended. Idempotent."""
        if self._fd is None:
            return
        try:
            self._say_whose(None)  # a later start's refusal must not name this one's file
            self._remove_if_unused()
        finally:
            os.close(self._fd)
            self._fd = None

    def _remove_if_unused(self) -> None:
        """Remove the run directory this start made when nothing but its lock is in it (the
        start was refused, or failed before its supervisor wrote anything): a refused start
        leaves nothing behind, in another user's data directory say. Done while the lock is
        held; a start that opened the file meanwhile sees it gone (`_still_there`)."""
        with contextlib.suppress(OSError):
            if not self.made or os.listdir(self.run_dir) != [START_LOCK]:
                return
            (self.run_dir / START_LOCK).unlink()
            for path in self.made:  # innermost first; one another start uses is not empty
                path.rmdir()


def wait_for_start(run_dir: Path, timeout: float = 60.0) -> None:
    """Wait while a `pipeline run` starts the job in `run_dir` (`StartLock`): `stop`, `status`
    and `logs` act on the run it starts, whose supervisor has not written its state yet."""
    deadline = time.monotonic() + timeout
    while start_under_way(run_dir):
        if time.monotonic() > deadline:
            raise LocalRunError(
                f"the run in {run_dir} is still being started after {timeout:g}s; try again "
                "in a moment"
            )
        time.sleep(0.05)


@contextlib.contextmanager
def refused_while_running(
    job_id: str,
    run_dir: Path,
    shown: str | None = None,
    mine: str | None = None,
    data_dir: str | None = None,
) -> Iterator[None]:
    """Refuse a start before it records anything, and keep other starts out while it does.

    A refused start must change nothing: `pipeline run` records its session in the run (a new
    run with --fresh) before the supervisor takes the run directory's lock, and a refused start
    that had recorded one left a run that never ends, or gave a later run's restarted workers
    the refused session's start to wait for. The lock is the supervisor's own, held here only
    while the session is recorded."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        # never run here, so nothing runs: and a start refused later (a bad --set) leaves no
        # run directory behind
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise LocalRunError(storage.describe("the run directory", run_dir, exc)) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise already_running(job_id, Path(run_dir), shown, mine, data_dir) from None
        yield
    finally:
        os.close(fd)  # releases the lock: the supervisor takes it next


def run_status(run_dir: Path) -> dict[str, Any]:
    """The state file as it is now (`launchplan.rundir.observed`: `lost` when no supervisor
    holds the run any more, tasks whose processes are gone `exited`)."""
    return observed(read_state(Path(run_dir) / STATE_FILE), run_dir)


def start_detached(
    job: Mapping[str, Any],
    run_dir: Path,
    *,
    pipeline_file: str | None = None,
    shown: str | None = None,
    stopped_orphans: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Start a supervisor in its own session in the background and return its first state
    (`stopped_orphans`: what `ExecOptions.stopped_orphans` says; `shown`: `pipeline_file` as
    the user named it, and `data_dir` the `--data-dir` given, for a refusal's stop
    command)."""
    run_dir = Path(run_dir)
    job_id = str(job.get("Job", job).get("ID"))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if supervisor_alive(run_dir):
            mine = refused_file(pipeline_file)
            shown = (shown or mine) if mine else None
            raise already_running(job_id, run_dir, shown, mine, data_dir)
        # the state file stays: it names the tasks of a supervisor that was killed outright,
        # which the new supervisor stops before it starts anything (LocalExecutor._acquire)
        (run_dir / JOB_FILE).write_text(json.dumps(job, indent=1))
        _hand_stopped_orphans(run_dir, stopped_orphans)
    except OSError as exc:
        raise LocalRunError(storage.describe("the run directory", run_dir, exc)) from None
    argv = [sys.executable, "-m", "asapo_pipelines.local.supervise", str(run_dir)]
    if pipeline_file:
        argv += ["--pipeline-file", pipeline_file]
    if data_dir:
        argv += ["--data-dir", data_dir]
    try:
        log = open(run_dir / SUPERVISOR_LOG, "ab")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise LocalRunError(storage.describe("the run directory", run_dir, exc)) from None
    with log:
        # its own session: the terminal's Ctrl-C and hang-up do not reach it, and it outlives
        # this command; the state file is how the two talk from now on
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        with contextlib.suppress(LocalRunError):
            state = read_state(run_dir / STATE_FILE)
            if state.get("pid") == proc.pid:
                return state
        if code is not None:
            raise LocalRunError(_last_error(run_dir) or f"the supervisor exited with code {code}")
        time.sleep(0.05)
    raise LocalRunError(
        f"the supervisor of job {job_id} did not start within {timeout:g}s; "
        f"see {run_dir / SUPERVISOR_LOG}"
    )


def _hand_stopped_orphans(run_dir: Path, stopped_orphans: Mapping[str, Any] | None) -> None:
    """`stopped_orphans` for the supervisor to read (`STOPPED_ORPHANS_FILE`), or none left
    from an earlier start that it would take for this one's."""
    from asapo_pipelines.local.layout import STOPPED_ORPHANS_FILE

    path = run_dir / STOPPED_ORPHANS_FILE
    if stopped_orphans:
        path.write_text(json.dumps(stopped_orphans))
    else:
        path.unlink(missing_ok=True)


def _last_error(run_dir: Path) -> str:
    try:
        lines = (run_dir / SUPERVISOR_LOG).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return ""


def live_tasks(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The task records of a run whose processes still run."""
    return [dict(u) for u in state.get("units", []) if still_ours(u)]


@dataclass(frozen=True)
class Orphans:
    """The tasks a lost supervisor left running, stopped by the next start (or `pipeline
    stop`): which run they worked for, whose supervisor it was, and their pids."""

    job: str
    run: str | None
    supervisor: int | None
    pids: list[int]
    #: those that did not stop within their KillTimeout and were killed (`stop_gently`):
    #: their counts stop at their last status record before it
    killed: list[int] = field(default_factory=list)
    #: their run directory, when it is not the one of the start that stopped them (the lost
    #: session ran with another `--data-dir`)
    run_dir: str | None = None

    def sentence(self) -> str:
        """One line for the operator: outputs pause while the orphans go, and this says why."""
        n = len(self.pids)
        tasks, workers = ("task", "worker") if n == 1 else ("tasks", "workers")
        of_run = f" of run {self.run}" if self.run else ""
        supervisor = f" (pid {self.supervisor})" if self.supervisor else ""
        killed = ""
        if self.killed:
            which = ", ".join(map(str, self.killed))
            killed = f"; {which} did not stop within {'its' if len(self.killed) == 1 else 'their'} "
            killed += "KillTimeout and had to be killed"
        where = f" in {self.run_dir}" if self.run_dir else ""
        return (
            f"stopped {n} {tasks} left running by the lost run of job {self.job}{where}: the "
            "orphaned "
            f"{workers}{of_run} (pids {', '.join(map(str, self.pids))}), whose supervisor"
            f"{supervisor} is gone{killed}"
        )

    def record(self) -> dict[str, Any]:
        """What the state file keeps of them (`pipeline status` and `run --detach` say it)."""
        return {
            "run": self.run,
            "supervisor": self.supervisor,
            "pids": list(self.pids),
            "message": self.sentence(),
        }


def stopped_orphans_note(state: Mapping[str, Any]) -> str:
    """The sentence a supervisor recorded when it stopped the tasks of a lost run before it
    started its own; empty when it stopped none."""
    found = state.get("stopped_orphans")
    return str(found.get("message") or "") if isinstance(found, Mapping) else ""


def _run_of(state: Mapping[str, Any], pids: list[int]) -> str | None:
    """The run the lost supervisor's tasks worked for: as its state file records it, else (a
    state file written before runs were recorded there) as the tasks' environment says."""
    if state.get("run"):
        return str(state["run"])
    from asapo_pipelines.worker.launch import RUN_ENV

    prefix = f"{RUN_ENV}=".encode()
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as fh:
            for entry in fh.read().split(b"\0"):
                if entry.startswith(prefix):
                    return entry[len(prefix) :].decode(errors="replace") or None
    return None


def stop_orphans(
    run_dir: Path, job: JobSpec | None = None, *, elsewhere: bool = False
) -> Orphans | None:
    """Stop the tasks a lost supervisor left running (its state file names them) and say which
    (None when none ran). Called before a run starts in `run_dir`: two generations of the same
    units reading the same streams would write every result twice.

    They are stopped as a supervisor stops its tasks (`stop_gently`): each gets its KillSignal
    and its KillTimeout (as `job` gives them) to finish the message it holds and publish its
    final status record, then SIGKILL. The lost session is ended from those records: killed
    at once, whatever they processed since their previous record would be in no count."""
    try:
        state = read_state(Path(run_dir) / STATE_FILE)
    except LocalRunError:
        return None
    if state.get("pid") == os.getpid():
        return None
    tasks = live_tasks(state)
    run = _run_of(state, [int(unit["pid"]) for unit in tasks])  # read while they still run
    stopped, killed = stop_gently(tasks, job)
    if killed and not wait_groups_gone(killed):
        raise LocalRunError(
            f"the tasks {', '.join(map(str, killed))} left running by the lost run in "
            f"{run_dir} did not exit after SIGKILL; stop them before starting it again"
        )
    if not stopped:
        return None
    supervisor = state.get("pid")
    if not isinstance(supervisor, int) or isinstance(supervisor, bool):
        supervisor = None  # a damaged state file: the sentence goes without it
    job_id = str(state.get("job") or Path(run_dir).name)
    # `elsewhere`: the run directory is not the one this start runs in, and the sentence
    # says which, so that its `pipeline status --data-dir` is understood
    where = str(Path(run_dir).resolve()) if elsewhere else None
    return Orphans(job_id, run, supervisor, stopped, killed, where)


def stop_orphans_elsewhere(run_dir: Path, job: JobSpec | None) -> Orphans | None:
    """Stop the tasks a lost supervisor left running in another run directory than the one
    this start takes: the run's last session was started with another `--data-dir`, and its
    workers read the same streams (and hold the same sinks) as the ones about to start. As
    `stop_orphans`, under that directory's supervisor lock, taken without waiting: a
    supervisor starting or running there keeps its tasks (the start is then refused by
    `runs.lifecycle.refuse_while_alive`). `job`: how its tasks are stopped when that directory
    has no `job.json` (a foreground run writes none)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR)
    except OSError:
        return None  # never run there, or not ours to open: nothing of ours is left there
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        return stop_orphans(run_dir, _job_of(Path(run_dir)) or job, elsewhere=True)
    finally:
        os.close(fd)


def left_running(
    run_dir: Path,
    shown: str | None = None,
    *,
    elsewhere: bool = False,
    data_dir: str | None = None,
) -> str:
    """A clause for a start refused before it stopped anything (a changed configuration): the
    tasks a lost supervisor left running go on working for its run, and the operator reads
    it in the refusal, not only in `pipeline status`. Empty when none runs. Called with the
    run directory's supervisor lock held (`refused_while_running`): no supervisor runs here.
    `elsewhere`: `run_dir` is the lost session's under another data directory, whose lock is
    not held: a supervisor alive there keeps tasks that are no orphans. `data_dir`: the
    refused start's `--data-dir`, which its stop command repeats (not `elsewhere`: that
    command names the lost run's own)."""
    try:
        state = read_state(Path(run_dir) / STATE_FILE)
        if elsewhere and supervisor_alive(Path(run_dir)):
            return ""
    except (LocalRunError, OSError):
        return ""
    pids = [int(unit["pid"]) for unit in live_tasks(state)]
    if not pids or state.get("pid") == os.getpid():
        return ""
    run = _run_of(state, pids)
    n = len(pids)
    stop = f"pipeline stop {shlex.quote(shown)}" if shown else "pipeline stop"
    if elsewhere:  # the lost run's directory is under another data directory (`--data-dir`)
        stop += f" --data-dir {shlex.quote(str(Path(run_dir).resolve().parent.parent))}"
    elif data_dir:  # the run directory the refused start was pointed at, not the default one
        stop += f" --data-dir {shlex.quote(data_dir)}"
    return (
        f"; {n} {'task' if n == 1 else 'tasks'} of the lost run"
        + (f" {run}" if run else "")
        + f" {'is' if n == 1 else 'are'} still running (pids {', '.join(map(str, pids))}), "
        f"whose supervisor is gone: `{stop}` stops {'it' if n == 1 else 'them'}, and so does "
        "a start with --fresh or --resume"
    )


#: How a task of a lost run is stopped when the job does not name it (a compiled job edited
#: since, say): as the compiled job stops every worker.
DEFAULT_KILL = (signal.SIGTERM, 30.0)


def stop_gently(tasks: list[dict[str, Any]], job: JobSpec | None) -> tuple[list[int], list[int]]:
    """Send each task's process group its KillSignal and wait, up to its KillTimeout, for the
    group to exit; SIGKILL the groups still there then. Returns the pids signalled and, of
    them, those killed. A task `job` does not name gets `DEFAULT_KILL`."""
    specs = {(t.group, t.name): t for g in job.groups for t in g.tasks} if job else {}
    deadlines: dict[int, float] = {}
    for unit in tasks:
        pid = int(unit["pid"])
        spec = specs.get((str(unit.get("group")), str(unit.get("task"))))
        sig, timeout = (spec.kill_signal, spec.kill_timeout) if spec else DEFAULT_KILL
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # each task leads its own process group: what it started goes with it
            os.killpg(pid, sig)
            deadlines[pid] = time.monotonic() + timeout
    stopped = list(deadlines)
    killed = [pid for pid, timeout in deadlines.items() if timeout <= time.monotonic()]
    waiting = {pid: d for pid, d in deadlines.items() if pid not in killed}
    while waiting:
        for pid, deadline in list(waiting.items()):
            if not group_members(pid):
                del waiting[pid]
            elif time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
                del waiting[pid]
        time.sleep(0.05)
    return stopped, killed


def stop_run(run_dir: Path, *, timeout: float | None = None) -> dict[str, Any]:
    """Signal the supervisor (SIGTERM) and wait until it has stopped every task. A run whose
    supervisor is gone has its leftover tasks stopped here (`stop_orphans`). Returns the final
    state, with `stopped_lost` when this call ended a lost run (not when an earlier stop had)."""
    run_dir = Path(run_dir)
    state = read_state(run_dir / STATE_FILE)
    if supervisor_alive(run_dir):
        pid = int(state["pid"])
        os.kill(pid, signal.SIGTERM)
        if timeout is None:
            timeout = _kill_budget(run_dir) + 15.0
        deadline = time.monotonic() + timeout
        while supervisor_alive(run_dir):
            if time.monotonic() > deadline:
                raise LocalRunError(
                    f"the supervisor (pid {pid}) of job {state.get('job')} did not stop within "
                    f"{timeout:g}s; see {run_dir / SUPERVISOR_LOG}"
                )
            time.sleep(0.05)
        # the lock goes a moment before the process: wait for it to be gone too
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return read_state(run_dir / STATE_FILE)
    if state.get("status") in FINAL:
        return state
    # the supervisor died without cleaning up (SIGKILL, power cut): finish its work
    orphans = stop_orphans(run_dir, _job_of(run_dir))
    for unit in state.get("units", []):
        unit["pid"] = None
        if unit.get("state") not in ("complete", "failed"):
            unit["state"] = "stopped"
    state.update(
        status="stopped",
        # which workers were still running, and are no more: the operator who found them in
        # `ps` (or their outputs still growing) sees that they were this run's
        message="stopped after its supervisor was lost"
        + (f"; {orphans.sentence()}" if orphans else ""),
        finished=time.time(),
        updated=time.time(),
    )
    if orphans:
        state["stopped_orphans"] = orphans.record()
    # the lost supervisor's last write, in the space it reserved for it (which goes with it)
    write_last_state(run_dir / STATE_FILE, state)
    # not recorded: a later stop reads the same message but stopped nothing (`show_stop`)
    return {**state, "stopped_lost": True}


def _kill_budget(run_dir: Path) -> float:
    spec = _job_of(run_dir)
    if spec is None:
        return 30.0
    return max((t.kill_timeout for g in spec.groups for t in g.tasks), default=5.0)


def _job_of(run_dir: Path) -> JobSpec | None:
    """The job a detached supervisor ran in `run_dir` (its `job.json`): how its tasks are
    stopped. None when there is none (a foreground run writes none) or it cannot be read."""
    try:
        job = json.loads((run_dir / JOB_FILE).read_text())
        from asapo_pipelines.local.job import read_job

        return read_job(job)
    except (OSError, ValueError, LocalRunError):
        return None


def find_unit(state: Mapping[str, Any], unit: str, task: str | None) -> dict[str, Any]:
    """The state record of `unit` (`group` or `group[index]`, index 0 by default) and its main
    task (or `task`)."""
    group, _, rest = unit.partition("[")
    index = int(rest.rstrip("]")) if rest.rstrip("]").isdigit() else 0
    records = [u for u in state.get("units", []) if u["group"] == group]
    if not records:
        groups = sorted({u["group"] for u in state.get("units", [])})
        raise LocalRunError(
            f"job {state.get('job')} has no unit {group}; its units are {', '.join(groups)}"
        )
    records = [u for u in records if u["index"] == index]
    if not records:
        raise LocalRunError(f"unit {group} has no replica {index}")
    if task is None:
        mains = [u for u in records if u["lifecycle"] == "main"]
        chosen = next((u for u in mains if u["task"] == group), mains[0] if mains else records[0])
        return dict(chosen)
    for record in records:
        if record["task"] == task:
            return dict(record)
    tasks = ", ".join(u["task"] for u in records)
    raise LocalRunError(f"unit {group} has no task {task}; its tasks are {tasks}")


def unit_log(
    run_dir: Path,
    unit: str,
    *,
    task: str | None = None,
    stderr: bool = False,
    follow: bool = False,
    previous: bool = False,
) -> Iterator[bytes]:
    """The unit's log of the latest session, or with `previous` of the session before it (an
    ended session's: nothing to follow)."""
    run_dir = Path(run_dir)
    if previous:
        record, logs_dir = _previous_logs(run_dir, unit, task)
    else:
        state = read_state(run_dir / STATE_FILE)
        _refuse_left_out(state, unit)
        record = find_unit(state, unit, task)
        logs_dir = Path(record["logs"])
    stream = "stderr" if stderr else "stdout"
    if not log_files(logs_dir, record["task"], stream):
        return iter(())

    def keep_going() -> bool:
        return supervisor_alive(run_dir) and run_status(run_dir).get("status") not in FINAL

    follow = follow and not previous
    return read_log(logs_dir, record["task"], stream, follow=follow, keep_going=keep_going)


def _refuse_left_out(state: Mapping[str, Any], unit: str) -> None:
    """One sentence for a unit the latest session did not run because it was a replay
    (`pipeline reprocess` runs no source): the unit is in the file, its log of the session
    before is kept, and "the job has no unit" sent the user looking for a typo."""
    replay = state.get(REPLAY)
    group = unit.partition("[")[0]
    if not isinstance(replay, Mapping) or group not in (replay.get("left_out") or []):
        return
    run = f"run {state['run']}, " if state.get("run") else ""
    raise LocalRunError(
        f"the latest session of job {state.get('job')} was a reprocess ({run}a replay of "
        f"{replay.get('of')}), in which sources do not run: {group} has no log of it; add "
        "--previous for its log of the session before"
    )


def _previous_logs(run_dir: Path, unit: str, task: str | None) -> tuple[dict[str, Any], Path]:
    """The unit's record and logs directory of the session before the latest, kept in
    `previous-alloc` with that session's last state (the run directory may have moved since:
    its logs are found under `previous-alloc` by their place in the allocation, not by the
    path recorded)."""
    kept = run_dir / PREVIOUS_ALLOC
    if not (kept / STATE_FILE).is_file():
        raise LocalRunError(
            f"no earlier session is kept in {run_dir}: only the session before the latest is, "
            "from its next start on (`pipeline logs FILE UNIT` shows the latest)"
        )
    record = find_unit(read_state(kept / STATE_FILE), unit, task)
    # <run>/alloc/<group>-<index>/alloc/logs: the last three parts name it in the allocation
    return record, kept.joinpath(*Path(record["logs"]).parts[-3:])
