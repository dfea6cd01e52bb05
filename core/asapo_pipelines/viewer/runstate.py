"""The local executor's view of a run: its state file (`runs/<job>/state.json`).

The status stream tells what each worker says; the executor knows what the workers cannot say
themselves: that a task is waiting out its restart delay, how often it was restarted, that it
failed for good. The viewer finds the file next to the pipeline (or is given its run
directory) and reads it on every poll; a pipeline on Nomad simply has none.

The file says what the supervisor last saw; a supervisor killed outright says nothing more.
The file is therefore read the way `pipeline status` reads it (`launchplan.rundir.observed`): a
run whose supervisor no longer holds its lock is `lost`, and each task whose process is gone
since is `exited`, so the page and `pipeline status` never disagree.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from asapo_pipelines.launchplan.rundir import RUNS, STATE_FILE, observed, recorded_state
from asapo_pipelines.viewer.model import PipelineView

#: where runs live relative to the pipeline file's directory or the embedded store (the names
#: are `launchplan.rundir`'s: the local executor writes the file there)
PATTERNS = tuple(f"{up}{RUNS}/*/{STATE_FILE}" for up in ("", "*/", "*/*/"))
#: how often to look for a run that has not appeared yet (seconds)
SEARCH_EVERY = 5.0
#: executor states -> the viewer's words (Nomad's "complete" is a finished unit)
STATES = {
    "pending": "waiting",
    "running": "running",
    "restarting": "restarting",
    "complete": "finished",
    "failed": "failed",
    "stopping": "stopped",
    "stopped": "stopped",
    "exited": "exited",  # its supervisor is lost and its process gone (`rundir.observed`)
}


def _bases(view: PipelineView) -> list[Path]:
    bases: list[Path] = []
    if view.path is not None:
        bases.append(Path(view.path).resolve().parent)
    store = (view.transport.get("embedded") or {}).get("path")
    if store:
        bases += [Path(store), Path(store).parent]
    return list(dict.fromkeys(bases))


def _belongs(data: dict[str, Any], view: PipelineView) -> bool:
    file = data.get("pipeline_file")
    if file and view.path is not None:
        try:
            return Path(file).resolve() == Path(view.path).resolve()
        except OSError:
            return False
    return view.name in (data.get("name"), data.get("job"))


class RunState:
    """Reads the run's state file; `units()` maps each unit instance to its executor record."""

    def __init__(self, view: PipelineView, run_dir: Path | None = None) -> None:
        self.view = view
        self.path: Path | None = Path(run_dir) / STATE_FILE if run_dir is not None else None
        self.fixed = run_dir is not None
        self._searched = 0.0

    def _find(self) -> Path | None:
        found: list[tuple[float, Path]] = []
        for base in _bases(self.view):
            for pattern in PATTERNS:
                for path in base.glob(pattern):
                    data = _read(path)
                    if data is not None and _belongs(data, self.view):
                        found.append((float(data.get("updated") or 0), path))
        return max(found)[1] if found else None

    def read(self) -> dict[str, Any] | None:
        """The run's state as `pipeline status` shows it (None: no run found, or unreadable
        for now), read once per poll; `units()` takes what this returned."""
        if not self.fixed and time.monotonic() - self._searched > SEARCH_EVERY:
            # a newer run of the same pipeline replaces the one we read
            self._searched = time.monotonic()
            self.path = self._find() or self.path
        if self.path is None:
            return None
        run = self.path.parent
        recorded = recorded_state(run)  # empty: not there yet, or being replaced
        return observed(recorded, run) if recorded else None

    def units(self, data: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """Each unit instance's executor record in `data` (what `read()` returned)."""
        if data is None:
            return {}
        instances = {u.instance for u in self.view.units}
        out: dict[str, dict[str, Any]] = {}
        for record in data.get("units") or []:
            if not isinstance(record, dict) or record.get("lifecycle", "main") != "main":
                continue
            if record.get("sidecar"):
                continue
            group = str(record.get("group", ""))
            if group not in instances:
                continue
            unit = out.setdefault(group, {"restarts": 0, "states": []})
            unit["restarts"] += int(record.get("restarts") or 0)
            unit["states"].append(STATES.get(str(record.get("state")), "waiting"))
        return out


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # not there yet, or being replaced: try again next poll
        return None
    return data if isinstance(data, dict) else None
