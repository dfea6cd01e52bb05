"""A process a test leaves running is ended after it and named in pytest's summary
(tools/leaked_processes.py, loaded by tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import PIPELINE, core_pipeline, read_state, wait_for
from leaked_processes import leaked_under, stop_run

TESTS = Path(__file__).resolve().parent
TOOLS = TESTS.parent / "tools"

INNER = """\
import os
import subprocess
import sys
from pathlib import Path


def test_leaves_a_sleeper(tmp_path):
    # in a session of its own, as a run's workers are: nothing ends it with the test
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        cwd=tmp_path,
        start_new_session=True,
    )
    Path(os.environ["SLEEPER_PID_FILE"]).write_text(str(sleeper.pid))


def test_leaves_nothing(tmp_path):
    subprocess.run([sys.executable, "-c", "pass"], cwd=tmp_path, check=True)
"""


def _alive(pid: int) -> bool:
    """Running (not a zombie) and still the sleeper."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"time.sleep(600)" in cmdline and state != "Z"


@pytest.mark.parametrize(
    "processes",
    [[], ["-n", "2"]],
    ids=["one-process", "xdist-workers"],  # CI runs the longer sessions with pytest-xdist
)
def test_a_process_left_in_tmp_path_is_ended_and_named_in_the_summary(
    tmp_path: Path, processes: list[str]
) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "test_inner.py").write_text(INNER)
    pid_file = tmp_path / "sleeper.pid"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    # the core's tests/conftest.py, as a plugin of a pytest run in a folder of its own
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TOOLS)])
    env["SLEEPER_PID_FILE"] = str(pid_file)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "conftest",
            "-q",
            *processes,
        ],
        cwd=inner,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    pid = int(pid_file.read_text())
    try:
        assert not _alive(pid), f"the sleeper {pid} is still running:\n{done.stdout}"
    finally:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    out = done.stdout
    assert "processes left running by tests (ended after them)" in out, out
    assert "test_inner.py::test_leaves_a_sleeper: 1 left running" in out, out
    assert f"pid {pid}: {sys.executable} -c import time; time.sleep(600)" in out, out
    assert "test_leaves_nothing" not in out.split("processes left running by tests")[1], out
    # and the test that left it errors at its teardown, saying what it left
    assert "2 passed, 1 error" in out, out
    assert "ERROR at teardown of test_leaves_a_sleeper" in out, out
    assert "the test left 1 process(es) running under its tmp_path, ended after it: pid" in out
    assert done.returncode == 1, out


def test_a_process_whose_command_line_reads_empty_is_found_by_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process in the middle of its execve (Popen has returned, the kernel has not yet set
    up the new program's arguments) reads an empty command line and environment for a moment.
    The scan took it for a kernel thread and skipped it, though its working directory is the
    test's: a sleeper left by a test under xdist was not ended, once in CI. Here a /proc of
    two such entries, one in the test's folder and one (a kernel thread) in /."""
    import leaked_processes

    proc = tmp_path / "proc"
    mine = tmp_path / "test_x"
    mine.mkdir()
    for pid, cwd in (("4242", mine), ("2", Path("/"))):
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cwd").symlink_to(cwd)
        (proc / pid / "cmdline").write_bytes(b"")
        (proc / pid / "environ").write_bytes(b"")
    monkeypatch.setattr(leaked_processes, "PROC", proc)
    assert leaked_under(mine) == [leaked_processes.Leaked(4242, "(a process starting a program)")]


def test_only_the_tests_own_folder_is_matched(tmp_path: Path) -> None:
    """A process in a sibling whose name starts with the folder's (test_x1, test_x10) is not
    this test's."""
    mine, sibling = tmp_path / "test_x1", tmp_path / "test_x10"
    mine.mkdir()
    sibling.mkdir()
    code = "import time; time.sleep(600)"
    there = subprocess.Popen([sys.executable, "-c", code, str(sibling / "f")], cwd=sibling)
    try:
        assert leaked_under(mine) == []
        [found] = leaked_under(sibling)
        assert found.pid == there.pid
    finally:
        there.kill()
        there.wait()
    assert leaked_under(sibling) == []


def test_stop_run_ends_a_service_run_and_its_workers(tmp_path: Path) -> None:
    """`stop_run` ends a run that would go on forever (a watching source) as an operator
    would: no worker of it is left. Killing its supervisor alone left the three workers."""
    (tmp_path / "incoming").mkdir()
    file = core_pipeline(
        tmp_path, files=tmp_path / "incoming", out=tmp_path / "out.jsonl", watch=True
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    run = subprocess.Popen(
        [PIPELINE, "run", str(file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = tmp_path / ".pipeline-data" / "runs" / "faults"
    try:
        wait_for(
            lambda: len([u for u in (read_state(run_dir) or {}).get("units", []) if u["pid"]]) == 3,
            timeout=120,
            what="the three workers",
        )
    finally:
        stop_run(run, file, env=env, cwd=tmp_path)
    assert run.returncode is not None
    assert leaked_under(tmp_path) == []
