"""A deployment's directory on the shared filesystem: the delivered pipeline file, one batch
script and one pair of log files per unit instance, the watcher's log and `state.json` (job ids,
restarts, states), which the watcher writes and `pipeline status` reads."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asapo_pipelines.sdk.executors import pid_alive
from asapo_pipelines_slurm.commands import SlurmError

STATE_FILE = "state.json"
PIPELINE_FILE = "pipeline.yaml"
WATCHER_LOG = "watcher.log"
VENV = "venv"


def instance_key(unit: str, replica: int) -> str:
    return f"{unit}-{replica}"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def pipeline(self) -> Path:
        return self.root / PIPELINE_FILE

    @property
    def watcher_log(self) -> Path:
        return self.root / WATCHER_LOG

    @property
    def venv(self) -> Path:
        return self.root / VENV

    def script(self, key: str) -> Path:
        return self.root / "jobs" / f"{key}.sh"

    def stdout(self, key: str) -> Path:
        return self.root / "logs" / f"{key}.out"

    def stderr(self, key: str) -> Path:
        return self.root / "logs" / f"{key}.err"


def read_state(layout: Layout) -> dict[str, Any] | None:
    try:
        data = json.loads(layout.state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SlurmError(f"cannot read the deployment's state {layout.state}: {exc}") from None
    return data if isinstance(data, dict) else None


def deployed_file(layout: Layout) -> str | None:
    """The pipeline file whose deployment `layout` holds (absolute), None when none is
    recorded there (or its state cannot be read: the commands that read it say why)."""
    try:
        state = read_state(layout)
    except SlurmError:
        return None
    file = (state or {}).get("file")
    return file if isinstance(file, str) and file else None


def write_state(layout: Layout, state: dict[str, Any]) -> None:
    """Atomically: a reader sees the old or the new state, never half of one."""
    tmp = layout.state.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, layout.state)
    except OSError as exc:
        raise SlurmError(f"cannot write the deployment's state {layout.state}: {exc}") from None


def watcher_alive(state: dict[str, Any] | None) -> bool:
    """The watcher recorded in ``state`` runs (same pid and same start time, so a recycled pid
    is not mistaken for it)."""
    if not state:
        return False
    pid = state.get("watcher_pid")
    return pid_alive(pid) and _start_time(pid) == state.get("watcher_started")


def _start_time(pid: Any) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> str | None:
    return _start_time(pid)


def end_watcher(state: dict[str, Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM the recorded watcher (by its pid, checked against its start time) and wait."""
    if not watcher_alive(state):
        return
    assert state is not None
    pid = int(state["watcher_pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
