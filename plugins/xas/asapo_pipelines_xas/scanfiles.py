"""Finding scan files: the files present, or each new file once it is complete (watch mode).

A beamline's data acquisition writes a scan file over minutes, often keeping it open and
pausing between chunks (a motor move takes longer than any settle time). The watcher decides
when a file is complete:

- Where the file system reports it (inotify, `asapo_pipelines.sdk.dirwatch`), a file it saw
  being written is complete when its writer closes it or it is renamed into the directory, and
  not before, however long the writer pauses.
- A file seen without such events (present before the watch started; NFS and GPFS report no
  writes made on other hosts) is complete once its size and modification time have not changed
  for `settle_seconds` and no process on this host holds it open for writing (``/proc``).
- An empty file is never complete: acquisition software creates the file first.

It hands out each file once, and again when it changes after it was handed out (read too early:
on a file system without events a writer paused longer than `settle_seconds`); such a new
version is handed out once it is closed or settled, and `version` counts them.
`read_for_params` reads one file the way `xas.scan-files` is configured.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from asapo_pipelines.sdk import files_open_for_writing
from asapo_pipelines_xas.errors import XasError
from asapo_pipelines_xas.params import ScanFilesParams
from asapo_pipelines_xas.readers import Scan, parse_scan, scan_bytes

#: a file's size and modification time (ns): what changes while it is written
Signature = tuple[int, int]


def _matches(directory: Path, pattern: str, recursive: bool) -> Iterable[Path]:
    found = directory.rglob(pattern) if recursive else directory.glob(pattern)
    # hidden files are what copy tools write before renaming into place
    return (p for p in found if p.is_file() and not p.name.startswith("."))


def signature(path: str | Path) -> Signature:
    """Size and modification time of a file (raises OSError when it is gone)."""
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns


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
    """Hands out each matching file when it is complete, and again when it changed since."""

    def __init__(
        self,
        directory: str | Path,
        pattern: str = "*",
        *,
        recursive: bool = False,
        settle_seconds: float = 2.0,
        done: Iterable[str | Path] = (),
        clock: Callable[[], float] = time.monotonic,
        open_for_writing: Callable[[Iterable[Path]], set[Path]] = files_open_for_writing,
        on_vanished: Callable[[Path], None] | None = None,
        on_gone_unread: Callable[[Path], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.pattern = pattern
        self.recursive = recursive
        self.settle_seconds = settle_seconds
        self.clock = clock
        self.open_for_writing = open_for_writing
        #: told of each file seen that disappeared before it was complete (never handed out as
        #: it is then): deleted or renamed away while being written
        self.on_vanished = on_vanished
        #: told of each file seen only in the file system's events, never listed, that was gone
        #: before it could be read, and of none handed out (`gone_unread`): copied in and
        #: removed at once (an archiving tool moving files away)
        self.on_gone_unread = on_gone_unread
        #: files said to be gone (either callback), until seen again: said once, however many
        #: events of the removed file arrive later
        self._gone: set[Path] = set()
        #: path -> signature when handed out; None for what a restarted unit sent before (its
        #: signature is taken when first seen: it is handed out again only if it changes later)
        self.sent: dict[Path, Signature | None] = {Path(p): None for p in done}
        #: path -> how many times it was handed out (2 and more: it changed after being read)
        self.versions: dict[Path, int] = {}
        self._pending: dict[Path, tuple[Signature, float]] = {}
        #: files the file system reported being written and not closed since
        self._writing: set[Path] = set()
        #: what `unready` puts back: the state before the last hand-out
        self._before: dict[Path, tuple[Signature | None, int] | None] = {}
        #: the files whose last hand-out was at their writer's close (an event), not settled:
        #: one that grows after that was closed between chunks by its writer
        self.closed_when_read: set[Path] = set()

    @property
    def waiting(self) -> set[Path]:
        """Paths seen and not complete yet (a new version of a file handed out included)."""
        return set(self._pending)

    @property
    def done(self) -> set[Path]:
        """Paths handed out at least once (or sent by an earlier run of the unit)."""
        return set(self.sent)

    def version(self, path: Path) -> int:
        """How many times `path` was handed out (1: the first time)."""
        return self.versions.get(path, 0)

    def events_lost(self) -> None:
        """The file system's event queue overflowed: close events may be missing, so files
        seen being written fall back to settling (and the open-for-writing check)."""
        self._writing.clear()

    def unready(self, path: Path) -> None:
        """Take back the last hand-out of `path` (it changed while it was read): it is handed
        out again when complete, as the same version."""
        before = self._before.pop(path, None)
        if before is None:
            self.sent.pop(path, None)
            self.versions.pop(path, None)
        else:
            self.sent[path], self.versions[path] = before
        self._pending.pop(path, None)

    def gone_unread(self, path: Path) -> None:
        """`path` was handed out and was gone when it was read: take the hand-out back, and
        tell of it no more (its caller said so)."""
        self.unready(path)
        self._gone.add(path)

    def _matching_name(self, name: str) -> bool:
        """Whether a file of this name at the top of the directory is one the pattern lists."""
        return (
            "/" not in self.pattern
            and not name.startswith(".")
            and (fnmatch.fnmatchcase(name, self.pattern))
        )

    def _tell_gone(self, path: Path, *, listed: bool) -> None:
        """A file seen is gone before it was handed out: listed while being written
        (`on_vanished`), or seen only in events or removed after its close (`on_gone_unread`);
        each is told once."""
        self._gone.add(path)
        tell = self.on_vanished if listed else self.on_gone_unread
        if tell is not None:
            tell(path)

    def poll(
        self, complete: Iterable[str] = (), written: Iterable[str] = (), removed: Iterable[str] = ()
    ) -> list[Path]:
        """Files that became complete since the last call, in name order.

        ``complete``: names of files the file system reported closed after writing or renamed
        into the directory (inotify): those are ready at once, without settling. ``written``:
        names of files it reported created or written to (and not closed since): those wait for
        their close event, never for settling alone. ``removed``: names of files it reported
        closed and then removed: gone before they could be read (`on_gone_unread`)."""
        closed = {self.directory / name for name in complete}
        taken = {self.directory / name for name in removed}
        reported = closed | taken | {self.directory / name for name in written}
        self._writing |= {self.directory / name for name in written}
        self._writing -= closed
        if not self.directory.is_dir():
            raise XasError(f"the scan directory {self.directory} does not exist")
        now = self.clock()
        ready: list[Path] = []
        settled: list[Path] = []
        present = set()
        for path in _matches(self.directory, self.pattern, self.recursive):
            present.add(path)
            self._gone.discard(path)  # there again: a new file of that name
            try:
                sig = signature(path)
            except FileNotFoundError:  # renamed or removed between listing and stat
                continue
            again = path in self.sent
            if again:
                before = self.sent[path]
                if before is None:  # sent by an earlier run: known from now on
                    self.sent[path] = sig
                    continue
                if before == sig:
                    continue
            seen = self._pending.get(path)
            if seen is None or seen[0] != sig:
                seen = self._pending[path] = (sig, now)
            if sig[0] == 0:
                continue  # created, nothing written yet: acquisition software does that first
            if path in closed and not again:
                ready.append(path)  # its writer closed it, or it was renamed into place
            elif path in self._writing:
                continue  # written while we watch, not closed yet: however long the pause
            elif now - seen[1] >= self.settle_seconds:
                # a new version of a file handed out before is settled too, even after its
                # close: a writer that opens, appends and closes per point is not sent per point
                settled.append(path)
        if settled:
            busy = self.open_for_writing(settled)
            for path in busy:
                # looked at again after another settle time (the /proc scan is not free)
                self._pending[path] = (self._pending[path][0], now)
            ready += [p for p in settled if p not in busy]
        self.closed_when_read -= set(ready)
        self.closed_when_read |= {p for p in ready if p in closed and p not in settled}
        for path in ready:
            self._before[path] = (
                (self.sent[path], self.versions[path]) if path in self.versions else None
            )
            self.sent[path] = self._pending.pop(path)[0]
            self.versions[path] = self.versions.get(path, 0) + 1
        for path in list(self._pending):
            if path not in present:
                del self._pending[path]
                # its close event may come after its removal (a writer still holding it):
                # seen being written, it is said to be gone before it was complete
                self._tell_gone(path, listed=path not in taken)
        for path in sorted(reported - present - self.sent.keys() - self._gone):
            # seen only in events (copied in and removed within a millisecond), never listed:
            # whether it was complete is not known, only that it could not be read
            if self._matching_name(path.name):
                self._tell_gone(path, listed=False)
        self._writing &= present  # removed, or never a match (hidden names of copy tools)
        return sorted(ready)


def read_for_params(path: str | Path, params: ScanFilesParams, name: str | None = None) -> Scan:
    """Read one file with the unit's settings (format, column mapping, overrides); `name` is
    what the scan is called (`read_scan`)."""
    path = Path(path)
    name = name or path.name
    return parse_for_params(scan_bytes(path, name), params, name)


def parse_for_params(raw: bytes, params: ScanFilesParams, name: str) -> Scan:
    """The scan in a file's bytes `raw`, read with the unit's settings (`read_for_params`).
    Watch mode reads a file once, parses these bytes and hashes the same bytes to tell a file
    that grew from one rewritten: a file rewritten between two reads was parsed as one content
    and hashed as another."""
    return parse_scan(
        raw,
        name=name,
        format=params.format,
        columns={str(role): column for role, column in params.columns.items()},
        sample=params.sample,
        element=params.element,
        edge=params.edge,
        min_points=params.min_points,
    )
