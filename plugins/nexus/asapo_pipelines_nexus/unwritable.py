"""Why the NeXus file cannot be written, as the cause and the remedy of one sentence.

HDF5 reports a failed write in its own words ("Can't decrement id ref count (file write failed:
..., errno = 1, error message = 'Operation not permitted', ...)"), which h5py raises as a
RuntimeError: the OS's errno is only in that text. And an `Operation not permitted` for root is
most often a file made immutable (`chattr +i`) or append-only (`chattr +a`): permissions do not
stop root, those attributes do, and their remedy is to remove them, not to change permissions.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
from pathlib import Path

from asapo_pipelines.sdk import storage

#: the errno HDF5 puts into the text of a failed open, read or write
_ERRNO = re.compile(r"\berrno = (\d+)")
#: Linux's FS_IOC_GETFLAGS, `_IOR('f', 1, long)`: the file's attributes (what lsattr shows)
_FS_IOC_GETFLAGS = (2 << 30) | (struct.calcsize("l") << 16) | (ord("f") << 8) | 1
#: the attributes that stop every write, even root's: (flag, name, chattr letter)
_READ_ONLY_FLAGS = ((0x10, "immutable", "i"), (0x20, "append-only", "a"))


def os_error(exc: BaseException, path: Path) -> BaseException:
    """The OS error under an HDF5 failure on `path`, when HDF5 names its errno; else `exc`."""
    number = exc.errno if isinstance(exc, OSError) else None
    if not number:
        match = _ERRNO.search(str(exc))
        number = int(match.group(1)) if match else None
    return OSError(number, os.strerror(number), str(path)) if number else exc


def read_only_attribute(path: Path) -> tuple[str, str] | None:
    """(name, chattr letter) of an attribute that makes `path` read-only even for root, else
    None (also where the file system keeps no such attributes, or the file is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(struct.calcsize("l")))
    except OSError:
        return None
    finally:
        os.close(fd)
    (flags,) = struct.unpack("i", raw[: struct.calcsize("i")])  # the kernel writes an int
    return next(((name, letter) for bit, name, letter in _READ_ONLY_FLAGS if flags & bit), None)


def cause_and_remedy(path: Path, exc: BaseException, unknown: str) -> tuple[str, str]:
    """Why `path` could not be written and what to do; a failure whose kind is not known gets
    the remedy of kind `unknown` (a `storage` kind)."""
    attribute = read_only_attribute(path)
    if attribute is not None:
        name, letter = attribute
        return (
            f"the file is read-only ({name}: chattr +{letter})",
            f"remove that attribute (chattr -{letter} {path}), then run the pipeline again; "
            "it resumes where it stopped",
        )
    cause = os_error(exc, path)
    kind = storage.kind_of(cause)
    kind = unknown if kind == storage.OTHER else kind
    # a full disk is a fact about the file system the folder is on, the others about the file
    return storage.reason(cause), storage.remedy(
        kind, path.parent if kind == storage.FULL else path
    )
