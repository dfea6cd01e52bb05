"""Helpers shared by the core tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def run_pipeline(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pipeline` command as a user would, capturing its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    full_env["COLUMNS"] = "200"
    full_env.update(env or {})
    return subprocess.run(
        [PIPELINE, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        input=input,
        check=False,
    )
