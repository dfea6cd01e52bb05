"""Waking on new files in a directory instead of polling it.

On Linux an inotify watch reports a file the moment its writer closes it (``IN_CLOSE_WRITE``)
or it is renamed into the directory (``IN_MOVED_TO``, what copy tools and careful acquisition
software do after writing under a hidden name). Such a file is complete: no settle time is
needed. Elsewhere, and on file systems that give no events for changes made on other hosts
(NFS, GPFS, Lustre: a file written by the detector host's DAQ is seen by size and time only),
callers keep polling and settling; `DirectoryEvents.wait` then simply sleeps.

With ``writes=True`` the watch also reports files being written (``IN_CREATE``, ``IN_MODIFY``)
and files removed after they were complete (``IN_DELETE``, ``IN_MOVED_FROM`` after their close):
a file the file system reported being written is incomplete until its close event comes, however
long its writer pauses, so a caller must not settle such a file. For files seen without events
(present before the watch started), `files_open_for_writing` tells whether a process on this
host still holds them open for writing (Linux ``/proc``; an unprivileged caller sees only its
own user's processes).

inotify is reached with ctypes on libc's ``inotify_init1``/``inotify_add_watch``: the standard
library has no binding, and no well-kept pure-Python package is worth a dependency for three
calls (the embedded transport's `_Waker` does the same).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import struct
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class Changes(NamedTuple):
    """What one wait saw, by file name: `complete` were closed after writing or moved in,
    `written` were created or written to and not closed since, `removed` were complete and
    then deleted or moved away, within the wait (the last two only with ``writes=True``): a
    file copied in and moved away at once, which a listing never shows."""

    complete: set[str]
    written: set[str]
    removed: frozenset[str] | set[str] = frozenset()


class DirectoryEvents:
    """Names of files closed after writing or moved into one directory (not its subfolders);
    with ``writes=True`` also of files being written."""

    def __init__(self, directory: str | Path, *, writes: bool = False) -> None:
        self.directory = Path(directory)
        self.fd = -1
        #: set when events were lost (queue overflow): the caller should look at everything
        self.overflowed = False
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return
            mask = IN_CLOSE_WRITE | IN_MOVED_TO
            if writes:
                mask |= IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM
            if libc.inotify_add_watch(fd, os.fsencode(self.directory), mask) < 0:
                os.close(fd)
                return
            self.fd = fd
        except (OSError, AttributeError):
            self.fd = -1

    @property
    def available(self) -> bool:
        """Whether events arrive (else the caller polls)."""
        return self.fd >= 0

    def wait(self, seconds: float, stop: threading.Event | None = None) -> set[str]:
        """Wait up to ``seconds`` for events; the names of the files closed after writing or
        moved in (may be empty: a timeout, a stop, or no events on this platform)."""
        return self.wait_changes(seconds, stop).complete

    def wait_changes(self, seconds: float, stop: threading.Event | None = None) -> Changes:
        """Wait up to ``seconds`` for events; the files closed or moved in, and those written
        to since (a file's last event decides: written after its close, it is written)."""
        if self.fd < 0:
            if stop is not None:
                stop.wait(seconds)
            return Changes(set(), set())
        # the stop event cannot be selected on: look at it every few tenths of a second
        slice_ = 0.1 if stop is not None else seconds
        left = seconds
        while True:
            with contextlib.suppress(InterruptedError):
                ready, _, _ = select.select([self.fd], [], [], max(0.0, min(slice_, left)))
                if ready:
                    return self._read()
            left -= slice_
            if left <= 0 or (stop is not None and stop.is_set()):
                return Changes(set(), set())

    def _read(self) -> Changes:
        names: set[str] = set()
        written: set[str] = set()
        removed: set[str] = set()
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while True:
                data = os.read(self.fd, 65536)
                if not data:
                    break
                offset = 0
                while offset + _HEADER.size <= len(data):
                    _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                    offset += _HEADER.size
                    raw = data[offset : offset + length].split(b"\0", 1)[0]
                    offset += length
                    if mask & IN_Q_OVERFLOW:
                        self.overflowed = True
                    elif raw:
                        # events of one file come in order: its last one decides
                        name = os.fsdecode(raw)
                        if mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
                            names.add(name)
                            written.discard(name)
                            removed.discard(name)
                        elif mask & (IN_CREATE | IN_MODIFY):
                            written.add(name)
                            names.discard(name)
                            removed.discard(name)
                        elif name in names:  # removed after its close: complete, and gone
                            names.discard(name)
                            removed.add(name)
                        else:  # removed while written (a close may follow: the writer's)
                            written.discard(name)
        return Changes(names, written, removed)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def nothing_matches(directory: Path, pattern: str, recursive: bool, what: str = "file") -> str:
    """The warning of a source reading the files present whose `pattern` matches none in
    `directory`: it names the directory, the pattern and what is there instead, since the
    run then sends nothing and ends, and a mistyped pattern or an empty folder looked like a
    beamtime with no data. `what` names the files sought (`scan file`)."""
    where = f"{directory} or its subdirectories" if recursive else str(directory)
    others = sorted(
        p.name
        for p in (directory.rglob("*") if recursive else directory.iterdir())
        if p.is_file() and not p.name.startswith(".")
    )
    if not others:
        there = "it holds no files"
    else:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        there = f"it holds {len(others)} other file{'s' if len(others) > 1 else ''}: {shown}"
    return f"no {what} in {where} matches pattern {pattern!r} ({there}): nothing is read"


def files_open_for_writing(paths: Iterable[str | Path]) -> set[Path]:
    """Those of `paths` that a process (this one included) holds open for writing, as far as
    ``/proc`` shows: every process of this user, every process when run as root. Empty where
    there is no ``/proc`` (not Linux). It reads every visible process's file descriptors, a few
    milliseconds on a busy host: ask for candidates only, not on every poll of every file."""
    wanted: dict[str, Path] = {}
    for path in paths:
        with contextlib.suppress(OSError):
            wanted[os.path.realpath(path)] = Path(path)
    if not wanted or not os.path.isdir("/proc/self/fd"):
        return set()
    found: set[Path] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            match = wanted.get(target)
            if match is not None and match not in found and _writable(f"/proc/{pid}/fdinfo/{fd}"):
                found.add(match)
    return found


def _writable(fdinfo: str) -> bool:
    """Whether the descriptor described by `fdinfo` was opened for writing (O_WRONLY, O_RDWR);
    unknown (gone, unreadable) counts as not."""
    try:
        with open(fdinfo) as f:
            for line in f:
                if line.startswith("flags:"):
                    return (int(line.split()[1], 8) & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        pass
    return False
