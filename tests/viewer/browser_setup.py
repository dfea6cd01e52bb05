"""Finds (and, as root, installs from the distribution's packages) the chromium the browser tests
drive. Never downloads a browser of its own. The noxfile can run it before the tests:

    python tests/viewer/browser_setup.py     # prints the path, exit 1 when there is none
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: flags for a quiet, offline, headless run inside containers
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_COMMANDS = (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"])


def find_chromium() -> str | None:
    for candidate in (shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_chromium() -> tuple[str | None, str]:
    """The chromium executable, installing Debian's package when we can; else (None, why)."""
    found = find_chromium()
    if found:
        return found, ""
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and there is no apt-get to install it"
    if os.geteuid() != 0:
        return None, "chromium is not installed and installing it needs root (apt-get)"
    for command in APT_COMMANDS:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            return None, f"{' '.join(command)} failed: {tail[0]}"
    found = find_chromium()
    return (found, "") if found else (None, "apt-get installed no chromium executable")


if __name__ == "__main__":
    path, why = ensure_chromium()
    print(path or why)
    sys.exit(0 if path else 1)
