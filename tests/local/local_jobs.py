"""Hand-written Nomad jobs (HTTP API JSON) whose tasks are small Python scripts."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

NS = 1_000_000_000
PY = sys.executable


def task(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """A raw_exec task running `python -c code`."""
    return {
        "Name": name,
        "Driver": "raw_exec",
        "Config": {"command": PY, "args": ["-c", code]},
        "KillTimeout": 2 * NS,
        "KillSignal": "SIGTERM",
        "LogConfig": {"MaxFiles": 3, "MaxFileSizeMB": 1},
        **extra,
    }


def group(name: str, *tasks: dict[str, Any], count: int = 1, **restart: Any) -> dict[str, Any]:
    policy = {"Attempts": 2, "Interval": 60 * NS, "Delay": NS // 10, "Mode": "fail"}
    policy.update(restart)
    return {"Name": name, "Count": count, "RestartPolicy": policy, "Tasks": list(tasks)}


def job(job_id: str, *groups: dict[str, Any], type: str = "batch", **extra: Any) -> dict[str, Any]:
    return {
        "Job": {
            "ID": job_id,
            "Name": job_id,
            "Type": type,
            "Datacenters": ["dc1"],
            "TaskGroups": list(groups),
            **extra,
        }
    }


def write_job(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload))
    return path


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None


PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAPO_PIPELINES_", "NOMAD_"))}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def pipeline(*args: str, cwd: Path | None = None, timeout: float = 90, **env: str) -> Any:
    """Run the installed `pipeline` command as a user would."""
    import subprocess

    return subprocess.run(
        [PIPELINE, *args],
        capture_output=True,
        text=True,
        env=cli_env(**env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
