"""Hand-written Nomad jobs (HTTP API JSON) whose tasks are small Python scripts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# the process helpers live in tests/helpers.py; the local tests import them from here too
from helpers import PIPELINE, alive, read_state, wait_for  # noqa: F401

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
