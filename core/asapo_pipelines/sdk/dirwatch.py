"""Waking on new files in a directory instead of polling it.

On Linux an inotify watch reports a file the moment its writer closes it (``IN_CLOSE_WRITE``)
or it is renamed into the directory (``IN_MOVED_TO``, what copy tools and careful acquisition
software do after writing under a hidden name). Such a file is complete: no settle time is
needed. Elsewhere, and on file systems that give no events for changes made on other hosts
(NFS, GPFS, Lustre: a file written by the detector host's DAQ is seen by size and time only),
callers keep polling and settling; `DirectoryEvents.wait` then simply sleeps.

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
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class DirectoryEvents:
    """Names of files closed after writing or moved into one directory (not its subfolders)."""

    def __init__(self, directory: str | Path) -> None:
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
        """Wait up to ``seconds`` for events; the names of the files they concern (may be
        empty: a timeout, a stop, or no events on this platform)."""
        if self.fd < 0:
            if stop is not None:
                stop.wait(seconds)
            return set()
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
                return set()

    def _read(self) -> set[str]:
        names: set[str] = set()
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
                        names.add(os.fsdecode(raw))
        return names

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
