"""Installing and finding the pinned yaml-language-server (tools/yaml-language-server).

Without Node.js or npm the editor tests are skipped on a developer's machine, but fail on CI
(CI=true), where the project's set-up must have installed them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "yaml-language-server"
SERVER = TOOL / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI must install it (see tools/yaml-language-server)")
    pytest.skip(reason)


def _server() -> Path:
    return SERVER


def ensure_server() -> Path:
    """Install the pinned yaml-language-server with `npm ci` if needed; return its script."""
    node = shutil.which("node")
    if node is None:
        _unavailable("Node.js (`node`) is not installed")
    server = _server()
    if server.is_file():
        return server
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed, so yaml-language-server cannot be installed")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=TOOL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0 or not server.is_file():
        pytest.fail(f"`npm ci` in {TOOL} failed:\n{result.stdout}\n{result.stderr}")
    return server
