"""A run stopped by a full disk whose end the store did not take: the viewer's `run` event says
what `pipeline status` says (failed, with the sentence that stopped it), not "running", and its
`units` event says each unit stopped, as `pipeline status` does, not "restarting".

The supervisor writes its end into the state file (in the space it reserved) and could not
record it in the store; an outside tester saw `"state":"running","ended":false` on `/events`
while `pipeline status` said failed and every unit stopped. Real commands: a detached watch-mode
run with its store and run directory on a small tmpfs the test fills, `pipeline status`, and a
real `pipeline view` on loopback whose `/events` is read as `curl -sN` reads it.

With the store on the full disk too (as the tester's was), the workers could not publish that
they stopped: their last records said "running", and the viewer, which took a silent worker for
one killed and about to be restarted, said "restarting" of units `pipeline status` said stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_viewer_run_end import environment, events_until
from viewer_support import start_view, stop_view

PIPELINE = str(Path(sys.executable).with_name("pipeline"))
NO_SPACE = "failed: No space left on device"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs under tmp_path, unmounted after the test (mounting needs root, as in CI)."""
    if shutil.which("mount") is None:
        pytest.skip("the full-disk scenario needs `mount` to make a small tmpfs")
    path = tmp_path / "disk"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs needs root, as in CI ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> None:
    """Take what space is left on `disk`, as other users of a shared disk did."""
    with contextlib.suppress(OSError), open(disk / f".filler-{uuid.uuid4().hex[:6]}", "wb") as fh:
        while True:
            fh.write(b"\0" * 4096)
            fh.flush()


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIPELINE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _copied(out: Path) -> int:
    with contextlib.suppress(OSError):
        return out.read_text().count("\n")
    return 0


def _kill_run(run_dir: Path) -> None:
    """Clean up: SIGKILL what the run's state names, should the test have failed midway."""
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((run_dir / "state.json").read_text())
        for pid in [state.get("pid")] + [u.get("pid") for u in state.get("units", [])]:
            if pid and _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.mark.parametrize("store_on", ["another disk", "the full disk"])
def test_a_run_stopped_by_a_full_disk_is_failed_on_the_viewer_as_in_status(
    tmp_path: Path, small_disk: Path, store_on: str
) -> None:
    incoming, out = tmp_path / "incoming", tmp_path / "out" / "copied.jsonl"
    incoming.mkdir()
    for i in range(30):
        (incoming / f"f{i:05d}.txt").write_text(f"file {i}\n")
    store = (small_disk if store_on == "the full disk" else tmp_path) / "store"
    file = tmp_path / "diskfull.pipeline.yaml"
    file.write_text(
        json.dumps(
            {
                "pipeline": "diskfull",
                "transport": {"embedded": {"path": str(store)}},
                "units": {
                    "files": {
                        "unit": "core.files",
                        "params": {"directory": str(incoming), "watch": True},
                        "outputs": {"files": "raw"},
                    },
                    "sink": {
                        "unit": "core.jsonl-sink",
                        "params": {"path": str(out)},
                        "inputs": {"messages": "raw"},
                    },
                },
            }
        )
    )
    env = {**environment(tmp_path), "COLUMNS": "200"}
    # the run directory on the disk that fills (`--data-dir`): the supervisor cannot write
    # its state file any more, and stops the run (its tasks drain and stop)
    where = ("--data-dir", str(small_disk))
    run_dir = small_disk / "runs" / "diskfull"
    aside = tmp_path / "aside.yaml"
    try:
        started = run("run", "--detach", file.name, *where, cwd=tmp_path, env=env)
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for(lambda: _copied(out) >= 5, "the first outputs")
        supervisor = json.loads((run_dir / "state.json").read_text())["pid"]
        # and it cannot record the run's end in the store (the tester's store was on the full
        # disk too, where the end may still find room in pages the store holds, or not): its
        # pipeline file is away while it stops, so it does not know where the store is
        file.rename(aside)
        fill(small_disk)
        wait_for(lambda: not _alive(supervisor), "the supervisor to exit")
        aside.rename(file)
        # space freed to look (a store on a full disk cannot even be read: SQLite's WAL index):
        # the workers' last words are the ones they could publish before it filled
        for filler in small_disk.glob(".filler-*"):
            filler.unlink()

        listed = run("runs", file.name, "--json", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        runs = {r["id"]: r for r in json.loads(listed.stdout)["runs"]}
        assert runs["r1"]["state"] == "running"  # no end recorded in the store
        shown = run("status", file.name, *where, "--json", cwd=tmp_path, env=env)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        status = json.loads(shown.stdout)
        assert status["status"] == "failed", status
        assert NO_SPACE in status["message"]
        assert {u["state"] for u in status["units"]} == {"stopped"}

        view, url = start_view(file, env)
        try:
            events = events_until(
                url, lambda e: e.get("run", {}).get("ended") and "units" in e, timeout=20
            )
        finally:
            assert "Traceback" not in stop_view(view)
        # each unit as `pipeline status` shows it, not a worker gone silent "restarting"
        assert {name: u["state"] for name, u in events["units"].items()} == {
            u["group"]: u["state"] for u in status["units"]
        }
        said = events.get("run", {})
        # the viewer tells what `pipeline status` tells, in its words
        assert (said.get("id"), said.get("state"), said.get("ended")) == ("r1", "failed", True)
        assert said["message"] == status["message"]
    finally:
        if aside.exists():
            aside.rename(file)
        _kill_run(run_dir)
