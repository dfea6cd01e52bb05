"""The run's state file (`<run>/state.json`): what `pipeline status` shows and how `pipeline
stop` finds the supervisor. Written atomically (temporary file, fsync, rename) so a reader never
sees half a file; it holds no environment and no secrets.

A run stopped by a full disk must still say so in its state file, yet writing it takes new
blocks: the supervisor reserves space for its last write when it starts (`reserve_space`) and
writes its final state into it (`write_last_state`), overwriting blocks the file already has.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asapo_pipelines import storage
from asapo_pipelines.local.errors import LocalRunError

#: Run states: running, stopping, then complete, failed or stopped.

#: The job `Meta` keys by which `pipeline reprocess` tells the supervisor that its session is
#: a replay: the run it replays, and the units it leaves out (the sources, comma-separated).
#: The state file keeps them (`REPLAY`) for `pipeline logs` of a source to say why it has no
#: log of the latest session.
REPLAYS_META, LEFT_OUT_META = "replays", "left_out"
#: the state's record of a replay: {"of": RUN, "left_out": [UNIT, ...]}, or None
REPLAY = "replay"


def replay_record(meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The state's `REPLAY` record from the job's `Meta`; None for a session that is no replay."""
    if not meta.get(REPLAYS_META):
        return None
    left_out = [u for u in meta.get(LEFT_OUT_META, "").split(",") if u]
    return {"of": meta[REPLAYS_META], "left_out": left_out}


class StateNotWritten(LocalRunError):
    """The state file could not be written: `error` says why (the supervisor tells a deleted
    run directory from a full disk)."""

    def __init__(self, message: str, path: Path, error: OSError) -> None:
        super().__init__(message)
        self.path = path
        self.error = error


#: Room kept for the last state beyond twice the first one: the final state's messages (the
#: sentence that stopped the run, each task's last error) are longer than the first state's.
RESERVE_SLACK = 16 * 1024


def _encode(state: dict[str, Any]) -> bytes:
    return json.dumps(state, indent=1, sort_keys=True).encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def reserved_path(path: Path) -> Path:
    """The file holding the space reserved for the last write of the state file `path`."""
    return path.with_name(f".{path.name}.reserved")


def _not_written(path: Path, exc: OSError) -> StateNotWritten:
    return StateNotWritten(storage.describe("writing the run state", path, exc), path, exc)


def _write_new(file: Path, data: bytes, path: Path) -> None:
    """`data` as the whole of `file`, on disk (fsync); a failure removes `file` and is the one
    sentence of state file `path`."""
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            file.unlink()
        raise _not_written(path, exc) from None


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically; a full disk or a read-only directory is one sentence (the
    last state written stays in place: a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_new(tmp, _encode(state), path)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _not_written(path, exc) from None


def reserve_space(path: Path, state: dict[str, Any]) -> None:
    """Reserve room beside the state file `path` for its last write (`write_last_state`), sized
    from the run's first state. Real bytes, not a sparse file or an fallocate'd range: writing
    over them later needs no new block on any file system that overwrites in place."""
    _write_new(reserved_path(path), b" " * (2 * len(_encode(state)) + RESERVE_SLACK), path)


def write_last_state(path: Path, state: dict[str, Any]) -> None:
    """Write the run's final state atomically, into the space `reserve_space` kept when there
    is some, so that a run stopped by a full disk still records how it ended; without it (or
    when the state has outgrown it, which is then freed first) as `write_state` does."""
    spare = reserved_path(path)
    data = _encode(state)
    try:
        fd = os.open(spare, os.O_WRONLY)  # neither created nor truncated: its blocks are kept
    except OSError:
        write_state(path, state)
        return
    try:
        try:
            fits = len(data) <= os.fstat(fd).st_size
            if fits:
                _write_all(fd, data)
                os.ftruncate(fd, len(data))  # shrinking frees blocks, it takes none
                os.fsync(fd)
        finally:
            os.close(fd)
        if not fits:
            spare.unlink()
            write_state(path, state)
            return
        os.replace(spare, path)
    except OSError as exc:
        raise _not_written(path, exc) from None


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
