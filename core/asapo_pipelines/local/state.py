"""The run's state file (`<run>/state.json`): what `pipeline status` shows and how `pipeline
stop` finds the supervisor. Written atomically (temporary file, fsync, rename) so a reader never
sees half a file; it holds no environment and no secrets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from asapo_pipelines.local.errors import LocalRunError

#: Run states: running, stopping, then complete, failed or stopped.
FINAL = ("complete", "failed", "stopped")


def write_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps(state, indent=1, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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
