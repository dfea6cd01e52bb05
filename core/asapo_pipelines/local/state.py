"""The run's state file (`<run>/state.json`): what `pipeline status` shows and how `pipeline
stop` finds the supervisor. Written atomically (temporary file, fsync, rename) so a reader never
sees half a file; it holds no environment and no secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from asapo_pipelines import storage
from asapo_pipelines.local.errors import LocalRunError

#: Run states: running, stopping, then complete, failed or stopped.
FINAL = ("complete", "failed", "stopped")


class StateNotWritten(LocalRunError):
    """The state file could not be written: `error` says why (the supervisor tells a deleted
    run directory from a full disk)."""

    def __init__(self, message: str, path: Path, error: OSError) -> None:
        super().__init__(message)
        self.path = path
        self.error = error


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically; a full disk or a read-only directory is one sentence (the
    last state written stays in place: a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(state, indent=1, sort_keys=True).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateNotWritten(
            storage.describe("writing the run state", path, exc), path, exc
        ) from None


def read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LocalRunError(f"no local run recorded in {path.parent}") from None
    except (OSError, ValueError) as exc:
        raise LocalRunError(f"cannot read the run state {path}: {exc}") from None
    if not isinstance(data, dict):
        raise LocalRunError(f"the run state {path} is not a JSON object")
    return data


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not running
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def process_start(pid: int | None) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or
    None when it is gone. With the pid it names one process for good: a recycled pid has
    another start time."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields after the command: state, ppid, pgrp, ... starttime is the 20th of them
    return int(fields[19]) if len(fields) > 19 and fields[0] != "Z" else None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, read from /proc."""
    members: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields after the command: state, ppid, pgrp, ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def wait_groups_gone(pgids: list[int], timeout: float = 5.0) -> bool:
    """Wait until every process of the groups has exited (signals are delivered
    asynchronously); True when they have."""
    import time

    deadline = time.monotonic() + timeout
    while any(group_members(g) for g in pgids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
