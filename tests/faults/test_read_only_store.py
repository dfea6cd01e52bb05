"""A store archived read-only after the beamtime (docs/runs.md) can still be inspected: `pipeline
runs`, `streams`, `tail` and `status` print on a read-only bind mount what they print on the
writable store, and exit 0 (they refused with "write.lock failed: Read-only file system", an
outside tester's P5). Commands that write (`run`, `prune`) keep their sentence. A store whose
writer was killed keeps commits in its write-ahead log (`index.db-wal`), which a reader of the
read-only folder must not miss. Needs the right to mount (root, as in CI)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults_support import core_pipeline, pipeline, write_files

from helpers import event_stream

READ_ONLY = "Read-only file system"

#: what `pipeline run` prints and each inspecting command, as (arguments after the file)
INSPECTING = (
    ("runs",),
    ("runs", "--json"),
    ("streams",),
    ("streams", "--json"),
    ("tail", "copied"),
    ("tail", "copied", "--json"),
    ("tail", "errors"),
    ("status",),
)


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[None]:
    """`path` bind-mounted onto itself read-only (as the outside tester protected a store), and
    always unmounted again: `chmod -R a-w` would not stop root."""
    if shutil.which("mount") is None:
        pytest.skip("remounting a folder read-only needs `mount`")
    done = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"this user may not bind-mount ({done.stderr.decode().strip()}); CI is root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _steady(text: str) -> str:
    """Output with the ages of `pipeline streams` ("9 s ago"), which grow between two calls,
    made equal (with the padding of their column)."""
    return re.sub(r" *\d+ (s|min|h|d) ago", " N ago", text)


def _inspect(file: Path, command: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return pipeline(command[0], str(file), *command[1:], cwd=file.parent)


def _files_in(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*"))


def test_a_read_only_store_is_inspected_as_the_writable_one(tmp_path: Path) -> None:
    files, out, store = tmp_path / "incoming", tmp_path / "out.jsonl", tmp_path / "store"
    write_files(files, 0, 3)
    file = core_pipeline(tmp_path, files=files, out=out, store=str(store))
    ran = pipeline("run", str(file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    before = _files_in(store)
    writable = {command: _inspect(file, command) for command in INSPECTING}
    for command, done in writable.items():
        assert done.returncode == 0, (command, done.stdout + done.stderr)
    assert '"message_count": 3' in writable[("streams", "--json")].stdout
    # looking left nothing behind (a `mode=ro` reader would leave -wal and -shm files)
    assert _files_in(store) == before

    with read_only_bind(store):
        for command, seen in writable.items():
            done = _inspect(file, command)
            said = done.stdout + done.stderr
            assert done.returncode == 0, (command, said)
            assert "Traceback" not in said, (command, said)
            assert READ_ONLY not in said, (command, said)
            assert _steady(done.stdout) == _steady(seen.stdout), command
            assert _steady(done.stderr) == _steady(seen.stderr), command
        # what writes keeps its sentence
        for command in (("run",), ("prune", "--older-than", "1s")):
            done = _inspect(file, command)
            said = " ".join((done.stdout + done.stderr).split())
            assert done.returncode != 0, (command, said)
            assert READ_ONLY in said, (command, said)
            assert "Traceback" not in said, (command, said)
    assert _files_in(store) == before


KILLED_WRITER = """
import os, signal, sys
from asapo_pipelines.transport import open_transport

producer = open_transport({"embedded": {"path": sys.argv[1]}}).producer("beam.raw")
for i in range(5):
    producer.send("scan1", b"counts %d" % i, {"i": i})
producer.flush()
os.kill(os.getpid(), signal.SIGKILL)  # before SQLite moves the log into the index file
"""


@pytest.mark.parametrize("with_shm", [True, False], ids=["with-shm", "log-only"])
def test_commits_in_the_log_of_a_killed_writer_are_read(tmp_path: Path, with_shm: bool) -> None:
    """The folder as a killed writer left it (its log and its `-shm` index of the log), or
    copied to the archive without the `-shm` file (a cache SQLite rebuilds from the log): the
    five messages are in the log only, and SQLite's `immutable` reading would not see them."""
    store = tmp_path / "store"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(store)], check=False)
    assert killed.returncode < 0  # SIGKILL
    index = store / "beam.raw" / "index.db"
    assert Path(f"{index}-wal").stat().st_size > 0
    if not with_shm:
        Path(f"{index}-shm").unlink()
    before = _files_in(store)
    with read_only_bind(store):
        done = pipeline("streams", str(store), "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    (source,) = json.loads(done.stdout)["data_sources"]
    (stream,) = source["streams"]
    assert (stream["name"], stream["message_count"], stream["last_id"]) == ("scan1", 5, 5)
    assert _files_in(store) == before


def _page_events(file: Path, seconds: float = 4.0) -> str:
    """What `pipeline view FILE` streams to its page for `seconds` (its `/events`), the viewer
    started as a user starts it and stopped with Ctrl+C by its pid."""
    import signal

    from faults_support import PIPELINE, env

    proc = subprocess.Popen(
        [PIPELINE, "view", str(file), "--port", "0"],
        cwd=file.parent,
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        return event_stream(match.group(1), seconds)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_viewer_shows_a_read_only_store(tmp_path: Path) -> None:
    """`pipeline view` reads the store alone too: on a read-only one its page said only
    "write.lock failed: Read-only file system" where the writable one's showed the streams."""
    files, out, store = tmp_path / "incoming", tmp_path / "out.jsonl", tmp_path / "store"
    write_files(files, 0, 3)
    file = core_pipeline(tmp_path, files=files, out=out, store=str(store))
    ran = pipeline("run", str(file), cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    writable = _page_events(file)
    assert "copied" in writable, writable[:2000]
    assert READ_ONLY not in writable, writable[:2000]
    with read_only_bind(store):
        shown = _page_events(file)
    assert READ_ONLY not in shown, shown[:2000]
    events = {line for line in shown.splitlines() if line.startswith("event: ")}
    assert events == {line for line in writable.splitlines() if line.startswith("event: ")}
    assert "copied" in shown
