"""Processes a test left running are ended after it, and named in pytest's summary.

A test that starts `pipeline run` and, on a timeout, SIGKILLs the supervisor alone leaves the
run's workers going: they live in sessions of their own by design (a lost supervisor must not
take them down). Those workers kept polling for the rest of the session on CI's 2-core machine
and could write into later tests' folders. After each test that used `tmp_path`, this plugin
looks for processes whose working directory, command line or environment names a path under
that test's `tmp_path` (only the test's own: other pytest sessions on the machine use other
temporary folders) and that are still there after a short wait (`LINGER`: a run just stopped
may still be exiting). It ends them by pid (SIGTERM, a short wait, then SIGKILL), fails the
test at its teardown with one line naming them, and adds a line per test to the terminal
summary: a test ends what it started; `stop_run` below is how a test ends a `pipeline run` as
an operator would. (Two full CI runs, every suite, named none before a leak became an error.)
The scan reads /proc (Linux only; elsewhere it finds nothing) and takes a few milliseconds.

Loaded by the core's and each plugin's tests/conftest.py (``pytest_plugins``), found through
the `pythonpath` setting of their pytest configuration (this folder). With pytest-xdist
(``-n N``) each worker looks after its own tests and sends what it found to the controller
(xdist's workeroutput), whose summary names them as without xdist.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROC = Path("/proc")
#: how long the processes get after SIGTERM before SIGKILL
TERM_GRACE = 5.0
#: how long a process found after a test may take to exit by itself before it is a leak
LINGER = 2.0
#: a leaked command is shown up to this many characters
SHOWN = 160
LEAKS = pytest.StashKey[list[tuple[str, list[str]]]]()
#: an xdist worker's leaks, sent to the controller in its workeroutput
WORKER_LEAKS = "asapo-pipelines-leaked-processes"


@dataclass(frozen=True)
class Leaked:
    pid: int
    command: str


def _ancestors() -> set[int]:
    """This process and its ancestors (never ended: a shell or pytest with its cwd there)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = (PROC / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _names(path: str) -> re.Pattern[bytes]:
    """`path` itself or anything under it, not a sibling sharing its prefix (test_x1, test_x10)."""
    return re.compile(re.escape(path.encode()) + rb"(?![^/\x00\s:;,=\"'])")


def _read(path: str) -> bytes:
    """A /proc file's bytes (unbuffered: the scan reads hundreds of them after every test)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def leaked_under(directory: Path) -> list[Leaked]:
    """Live processes (not this one or its ancestors) whose cwd, command line or environment
    names `directory` or a path under it. Processes that cannot be read are left out."""
    if not PROC.is_dir():
        return []
    path = str(directory)
    pattern, own = _names(path), _ancestors()
    found = []
    for entry in os.scandir(PROC):
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            cwd = os.readlink(f"{entry.path}/cwd")  # a zombie has none: OSError
            cmdline = _read(f"{entry.path}/cmdline")
            in_cwd = cwd == path or cwd.startswith(path + "/")
            if not cmdline and not in_cwd:
                # a kernel thread; or a process in the middle of its execve, whose arguments
                # and environment read empty for a moment (see `_command`)
                continue
            hit = in_cwd or pattern.search(cmdline)
            if not hit:
                hit = pattern.search(_read(f"{entry.path}/environ"))
        except OSError:
            continue
        if hit:
            found.append(Leaked(int(entry.name), _command(entry.path, cmdline)))
    return found


def _command(proc: str, cmdline: bytes) -> str:
    """A process's command line as text. Popen returns once the child's execve has passed its
    point of no return, before the kernel has set up the new program's arguments: a test that
    returns at once may be scanned while its process's command line reads empty. Such a
    process (found by its working directory) was taken for a kernel thread and not ended
    (a sleeper left by a test under xdist, once in CI). Read again for a moment."""
    deadline = time.monotonic() + 0.5
    while not cmdline and time.monotonic() < deadline:
        time.sleep(0.01)
        try:
            cmdline = _read(f"{proc}/cmdline")
        except OSError:
            break
    if not cmdline:
        return "(a process starting a program)"
    return cmdline.rstrip(b"\x00").replace(b"\x00", b" ").decode(errors="replace")


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (reaped here when it is this process's child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def _wait_gone(pids: list[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not all(map(_gone, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)


def end(pids: list[int], grace: float = TERM_GRACE) -> None:
    """SIGTERM each pid, wait up to `grace` seconds for them to go, then SIGKILL the rest."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        _wait_gone(pids, grace)
        pids = [p for p in pids if not _gone(p)]
        if not pids:
            return


def _shown(command: str, tmp_path: Path) -> str:
    command = command.replace(str(tmp_path), "<tmp_path>")
    return command if len(command) <= SHOWN else command[: SHOWN - 3] + "..."


@pytest.fixture(autouse=True)
def _leaked_processes_ended(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    tmp_path = request.node.funcargs.get("tmp_path")
    if tmp_path is None:  # the test had no tmp_path: nothing of its own to look for
        return
    found = leaked_under(tmp_path)
    if found:  # a process in the middle of exiting (a run just stopped) is not a leak
        _wait_gone([p.pid for p in found], LINGER)
    leaked = [p for p in found if not _gone(p.pid)]
    if not leaked:
        return
    end([p.pid for p in leaked])
    commands = [f"pid {p.pid}: {_shown(p.command, tmp_path)}" for p in leaked]
    request.config.stash.setdefault(LEAKS, []).append((request.node.nodeid, commands))
    pytest.fail(
        f"the test left {len(leaked)} process(es) running under its tmp_path, ended after it: "
        + "; ".join(commands),
        pytrace=False,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller's summary names them
        leaks = session.config.stash.get(LEAKS, [])
        workeroutput[WORKER_LEAKS] = [[nodeid, commands] for nodeid, commands in leaks]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In xdist's controller: keep what a worker that ended found."""
    found = getattr(node, "workeroutput", {}).get(WORKER_LEAKS, [])
    leaks = node.config.stash.setdefault(LEAKS, [])
    leaks.extend((nodeid, list(commands)) for nodeid, commands in found)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    leaks = terminalreporter.config.stash.get(LEAKS, [])
    if not leaks:
        return
    terminalreporter.section("processes left running by tests (ended after them)")
    for nodeid, commands in leaks:
        terminalreporter.write_line(f"{nodeid}: {len(commands)} left running")
        for command in commands:
            terminalreporter.write_line(f"    {command}")


def stop_run(
    run: subprocess.Popen[Any],
    file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> tuple[Any, Any]:
    """End a `pipeline run FILE` still going as an operator would: `pipeline stop FILE` with
    the run's environment (its tasks get their kill signal, the supervisor ends), then SIGKILL
    the supervisor only if it is still there after `timeout`. Killing the supervisor alone
    leaves its workers running: they live in sessions of their own. Returns what the run
    printed that was not read yet (`communicate`)."""
    if run.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(
                [str(Path(sys.executable).with_name("pipeline")), "stop", str(file)],
                env=None if env is None else dict(env),
                cwd=cwd,
                capture_output=True,
                timeout=timeout,
            )
    try:
        return run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        return run.communicate()
