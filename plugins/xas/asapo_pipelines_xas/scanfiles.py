"""Finding scan files: the files present, or each new file once it is complete (watch mode).

A beamline's data acquisition writes a scan file over minutes. The watcher treats a file as
complete once its size and modification time have not changed for `settle_seconds` or, where
the file system reports it (inotify, `asapo_pipelines.sdk.dirwatch`), at once when its writer
closes it or it is renamed into the directory; it hands out each path once.
`read_for_params` reads one file the way `xas.scan-files` is configured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from asapo_pipelines_xas.errors import XasError
from asapo_pipelines_xas.params import ScanFilesParams
from asapo_pipelines_xas.readers import Scan, read_scan


def _matches(directory: Path, pattern: str, recursive: bool) -> Iterable[Path]:
    found = directory.rglob(pattern) if recursive else directory.glob(pattern)
    # hidden files are what copy tools write before renaming into place
    return (p for p in found if p.is_file() and not p.name.startswith("."))


def list_scan_files(
    directory: str | Path, pattern: str = "*", *, recursive: bool = False, order: str = "name"
) -> list[Path]:
    """The matching files present now, by name or by modification time."""
    directory = Path(directory)
    if not directory.is_dir():
        raise XasError(f"the scan directory {directory} does not exist")
    files = list(_matches(directory, pattern, recursive))
    if order == "mtime":
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, str(p)))
    return sorted(files)


class ScanFileWatcher:
    """Hands out each matching file once, when it has stopped changing."""

    def __init__(
        self,
        directory: str | Path,
        pattern: str = "*",
        *,
        recursive: bool = False,
        settle_seconds: float = 2.0,
        done: Iterable[str | Path] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = Path(directory)
        self.pattern = pattern
        self.recursive = recursive
        self.settle_seconds = settle_seconds
        self.clock = clock
        #: paths already handed out (a restarted unit passes what it sent before)
        self.done: set[Path] = {Path(p) for p in done}
        self._pending: dict[Path, tuple[tuple[int, int], float]] = {}

    def poll(self, complete: Iterable[str] = ()) -> list[Path]:
        """Files that became complete since the last call, in name order.

        ``complete``: names of files the file system reported closed after writing or renamed
        into the directory (inotify): those are ready at once, without settling."""
        closed = {self.directory / name for name in complete}
        if not self.directory.is_dir():
            raise XasError(f"the scan directory {self.directory} does not exist")
        now = self.clock()
        ready: list[Path] = []
        present = set()
        for path in _matches(self.directory, self.pattern, self.recursive):
            present.add(path)
            if path in self.done:
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:  # renamed or removed between listing and stat
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            seen = self._pending.get(path)
            if path in closed and stat.st_size > 0:
                pass  # its writer closed it, or it was renamed into place: complete
            elif seen is None or seen[0] != signature:
                self._pending[path] = (signature, now)
                if self.settle_seconds > 0 or stat.st_size == 0:
                    continue
            elif now - seen[1] < self.settle_seconds or stat.st_size == 0:
                continue
            ready.append(path)
        for path in ready:
            self.done.add(path)
            self._pending.pop(path, None)
        for path in list(self._pending):
            if path not in present:
                del self._pending[path]
        return sorted(ready)


def read_for_params(path: str | Path, params: ScanFilesParams) -> Scan:
    """Read one file with the unit's settings (format, column mapping, overrides)."""
    return read_scan(
        path,
        format=params.format,
        columns={str(role): column for role, column in params.columns.items()},
        sample=params.sample,
        element=params.element,
        edge=params.edge,
        min_points=params.min_points,
    )
