"""Fixtures of the fault tests: small file systems the test mounts itself (a full disk, a
read-only mount) and a user without write permission."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import PIPELINE


class Tmpfs:
    """A tmpfs mounted by the test: `fill()` takes what space is left, `grow()` remounts it
    bigger (freeing space as an operator would), `read_only()` remounts it read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def fill(self) -> None:
        filler = self.path / f".filler-{uuid.uuid4().hex[:6]}"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()

    def free(self) -> None:
        for filler in self.path.glob(".filler-*"):
            filler.unlink()

    def grow(self, size: str) -> None:
        self._remount(f"size={size}")

    def read_only(self) -> None:
        self._remount("ro")

    def writable(self) -> None:
        self._remount("rw")

    def free_bytes(self) -> int:
        info = os.statvfs(self.path)
        return info.f_bavail * info.f_frsize


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Tmpfs]]:
    """`tmpfs("4m")`: a new tmpfs of that size under tmp_path, unmounted after the test.

    Needs the right to mount (root, as in CI); elsewhere the test is skipped with the reason."""
    mounted: list[Path] = []

    def make(size: str) -> Tmpfs:
        if shutil.which("mount") is None:
            pytest.skip("the full-disk scenarios need `mount` to make a small tmpfs")
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(
                "the full-disk scenarios mount a small tmpfs, which this user may not do "
                f"({done.stderr.strip() or 'mount failed'}); CI runs them as root"
            )
        mounted.append(path)
        return Tmpfs(path)

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


NOBODY = 65534


@pytest.fixture
def as_nobody() -> list[str]:
    """The command prefix that runs a command as an unprivileged user (uid/gid 65534)."""
    if os.getuid() != 0:
        pytest.skip("running a command as another user needs root (CI runs as root)")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("the permission scenarios need setpriv (util-linux)")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run([*prefix, PIPELINE, "--version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"user {NOBODY} cannot run {PIPELINE} (its installation is not readable)")
    return prefix
