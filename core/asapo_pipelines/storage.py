"""One sentence for a failure of the storage under a file or directory: what failed, where,
and what the user can do about it. Full disks, read-only mounts, missing permissions and
damaged files are facts about the machine, not bugs, and each has its own remedy.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

#: SQLite's primary result codes we tell apart (`sqlite3.Error.sqlite_errorcode & 0xff`)
SQLITE_PERM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT = 3, 8, 10, 11
SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 13, 14, 26

FULL = "full"
DENIED = "denied"
READ_ONLY = "read-only"
DAMAGED = "damaged"
OTHER = "other"


def kind_of(exc: BaseException) -> str:
    """full, denied, read-only, damaged or other."""
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return FULL
        if exc.errno in (errno.EACCES, errno.EPERM):
            return DENIED
        if exc.errno == errno.EROFS:
            return READ_ONLY
        return OTHER
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc).lower()
        if code == SQLITE_FULL or "disk is full" in text:
            return FULL
        if code in (SQLITE_CORRUPT, SQLITE_NOTADB) or "malformed" in text:
            return DAMAGED
        if code == SQLITE_READONLY or "readonly" in text:
            return READ_ONLY
        if code in (SQLITE_PERM, SQLITE_CANTOPEN) or "unable to open" in text:
            return DENIED
        return OTHER
    # libraries that wrap the C errno in their own text (HDF5 through h5py)
    text = str(exc).lower()
    if "no space left" in text or "disk is full" in text or "errno = 28" in text:
        return FULL
    if "read-only file system" in text or "errno = 30" in text:
        return READ_ONLY
    return OTHER


def remedy(kind: str, path: Path | str) -> str:
    where = Path(path)
    if kind == FULL:
        return f"the file system holding {where} is full; free space there and run again"
    if kind == DENIED:
        return (
            f"this user (uid {os.getuid()}) may not write to {where}; give it write permission "
            "there or choose another directory"
        )
    if kind == READ_ONLY:
        return (
            f"{where} is read-only (a read-only mount or file); make it writable or choose "
            "another directory"
        )
    if kind == DAMAGED:
        return (
            f"{where} is damaged; restore it from a backup, or move it aside to start afresh "
            "(what it held is then lost)"
        )
    return f"check the storage under {where} (free space, permissions, the disk itself)"


def reason(exc: BaseException) -> str:
    """The short reason of a storage failure (the OS's words, or the library's first line)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if kind_of(exc) == FULL and "no space" not in text.lower():
        text = "no space left on device"
    return text.rstrip(".")[:300] or type(exc).__name__


def describe(what: str, path: Path | str, exc: BaseException, kind: str | None = None) -> str:
    """`<what> (<path>) failed: <reason>; <remedy>` in one sentence; `kind`: what the caller
    knows better than `kind_of` (a store's own file of the wrong type is damaged)."""
    return f"{what} ({path}) failed: {reason(exc)}; {remedy(kind or kind_of(exc), path)}"


def not_a_directory(root: Path, what: str, setting: str) -> str | None:
    """Why directory `root` (`what`, e.g. "the embedded store", set by `setting`) cannot be
    one, with what to do: it names a file, or lies under one. Said instead of "does not exist
    yet", or of whatever opening or creating it would say. None when it is a directory, may be
    made, or cannot be looked at (then said by what touches it)."""
    for path in (root, *root.parents):
        try:
            mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue  # not made yet, or under a file: the first path that exists decides
        except OSError:
            return None
        if stat.S_ISDIR(mode):
            return None
        why = f"{what} path {root} is not a directory but a file"
        if path != root:
            why = f"{path} is not a directory but a file, so {what} {root} cannot be made"
        return f"{why}; set {setting} to a directory (or move the file away)"
    return None
