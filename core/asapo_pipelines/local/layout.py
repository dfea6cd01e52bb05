"""Nomad's allocation directory layout, under `<data>/runs/<job>/` (`launchplan.rundir`, whose
state file the viewer reads too).

A Nomad client keeps `<data_dir>/alloc/<alloc-id>/` per allocation with a shared `alloc/`
(`data/`, `logs/`, `tmp/`) and one directory per task (`local/`, `secrets/`, `tmp/`); the task
runs in its task directory. Locally the allocation directory is named `<group>-<index>` so that
people can find it; the allocation ID (a UUID, as on Nomad) is in NOMAD_ALLOC_ID and the state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asapo_pipelines.launchplan.rundir import JOB_FILE, LOCK_FILE, SUPERVISOR_LOG

__all__ = [
    "ALLOC",
    "JOB_FILE",
    "LOCK_FILE",
    "PREVIOUS_ALLOC",
    "STOPPED_ORPHANS_FILE",
    "SUPERVISOR_LOG",
    "AllocDirs",
    "alloc_dirs",
]

#: the latest session's allocation directories, and the session's before it (its logs to look
#: back at: `pipeline logs FILE UNIT --previous`), with that session's last state inside
ALLOC, PREVIOUS_ALLOC = "alloc", "previous-alloc"
#: the tasks of a lost run `pipeline run --detach` stopped before starting its supervisor
#: (JSON of `control.Orphans.record`), handed to the supervisor in the run directory: on its
#: command line the JSON, with paths and pids, filled the process list (`ps`)
STOPPED_ORPHANS_FILE = "stopped-orphans.json"


@dataclass(frozen=True)
class AllocDirs:
    root: Path  # <run>/alloc/<group>-<index>

    @property
    def shared(self) -> Path:
        """NOMAD_ALLOC_DIR: shared by the allocation's tasks."""
        return self.root / "alloc"

    @property
    def logs(self) -> Path:
        return self.shared / "logs"

    def task(self, task: str) -> Path:
        return self.root / task

    def local(self, task: str) -> Path:
        """NOMAD_TASK_DIR."""
        return self.task(task) / "local"

    def secrets(self, task: str) -> Path:
        """NOMAD_SECRETS_DIR."""
        return self.task(task) / "secrets"

    def create(self, tasks: list[str]) -> None:
        for sub in ("data", "logs", "tmp"):
            (self.shared / sub).mkdir(parents=True, exist_ok=True)
        for task in tasks:
            for sub in ("local", "tmp"):
                (self.task(task) / sub).mkdir(parents=True, exist_ok=True)
            secrets = self.secrets(task)
            secrets.mkdir(parents=True, exist_ok=True)
            os.chmod(secrets, 0o700)


def alloc_dirs(run: Path, group: str, index: int) -> AllocDirs:
    return AllocDirs(Path(run) / ALLOC / f"{group}-{index}")
