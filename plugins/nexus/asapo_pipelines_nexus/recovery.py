"""Reopening a file whose SWMR writer was killed.

HDF5 marks a file "open for (SWMR) write" in its superblock and refuses a second writer until the
mark is cleared, which after a `kill -9` nobody does: the restarted writer would fail for ever.
HDF5's own `h5clear -s` clears it; this module does the same for the superblock versions that
`libver="latest"` writes (2 and 3), so that a restarted worker recovers without extra tools:

- the caller guarantees that no writer is alive: HDF5 drops its own file lock once a writer
  enters SWMR mode, so `NexusWriter` holds a lock of its own (`<file>.lock`) while it writes and
  calls this only after taking that lock;
- it checks that the stored superblock checksum is what it computes before it changes anything
  (Jenkins' lookup3 `hashlittle`, the checksum HDF5 uses for metadata), and refuses otherwise.

Entries are flushed one by one, so everything written before the crash is still in the file.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: `swmr_format_problem` of a file without HDF5's signature
NOT_HDF5 = "is not an HDF5 file"
#: how much of the file's start is read to find the superblock
_HEAD = 8192
_MASK = 0xFFFFFFFF


class RecoveryError(Exception):
    """The superblock is not one this module can clear safely."""


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle` on bytes, as HDF5's metadata checksum."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    i = 0
    while length - i > 12:
        a = (a + int.from_bytes(data[i : i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4 : i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8 : i + 12], "little")) & _MASK
        a = (a - c) & _MASK
        a ^= _rot(c, 4)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rot(a, 6)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rot(b, 8)
        b = (b + a) & _MASK
        a = (a - c) & _MASK
        a ^= _rot(c, 16)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rot(a, 19)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rot(b, 4)
        b = (b + a) & _MASK
        i += 12
    tail = data[i:]
    if not tail:
        return c
    padded = tail + b"\0" * (12 - len(tail))
    a = (a + int.from_bytes(padded[0:4], "little")) & _MASK
    b = (b + int.from_bytes(padded[4:8], "little")) & _MASK
    c = (c + int.from_bytes(padded[8:12], "little")) & _MASK
    c ^= b
    c = (c - _rot(b, 14)) & _MASK
    a ^= c
    a = (a - _rot(c, 11)) & _MASK
    b ^= a
    b = (b - _rot(a, 25)) & _MASK
    c ^= b
    c = (c - _rot(b, 16)) & _MASK
    a ^= c
    a = (a - _rot(c, 4)) & _MASK
    b ^= a
    b = (b - _rot(a, 14)) & _MASK
    c ^= b
    c = (c - _rot(b, 24)) & _MASK
    return c


def _signature_at(head: bytes) -> int | None:
    """Where the HDF5 superblock starts in the file's first bytes, None when it has none."""
    # the superblock sits at 0, 512, 1024, 2048, ... (a user block may precede it)
    offset = 0
    while offset + 12 <= len(head):
        if head[offset : offset + 8] == SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _superblock(head: bytes) -> tuple[int, int]:
    """(offset of the superblock, its length without the checksum) for versions 2 and 3."""
    offset = _signature_at(head)
    if offset is None:
        raise RecoveryError("no HDF5 superblock found")
    version = head[offset + 8]
    if version not in (2, 3):
        raise RecoveryError(f"superblock version {version} is not 2 or 3")
    size_of_offsets = head[offset + 9]
    return offset, 12 + 4 * size_of_offsets


def swmr_format_problem(path: str | Path) -> str | None:
    """Why HDF5 cannot write the file at `path` in SWMR mode, as the end of "<path> ..."; None
    when it can, when no file or an empty one is there (the writer starts a file there), or
    when the file cannot be read (opening it says why). Only the first bytes are read."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
    except OSError:
        return None
    if not head:
        return None
    offset = _signature_at(head)
    if offset is None:
        return NOT_HDF5
    # SWMR needs superblock version 3 (`libver="latest"`): h5py's and HDF5's default writes
    # version 0, and opening such a file does not upgrade it
    if head[offset + 8] < 3:
        return (
            f"is an HDF5 file of an older format (superblock version {head[offset + 8]}, "
            "HDF5's default), which HDF5 cannot write in SWMR mode"
        )
    return None


def clear_status_flags(path: str | Path) -> bool:
    """Clear the "open for write" mark of a file whose writer is dead; True if it was set."""
    fd = os.open(Path(path), os.O_RDWR)
    try:
        head = os.pread(fd, _HEAD, 0)
        offset, length = _superblock(head)
        body = head[offset : offset + length]
        (stored,) = struct.unpack("<I", head[offset + length : offset + length + 4])
        if lookup3(body) != stored:
            raise RecoveryError("the superblock checksum does not match; not touching it")
        if body[11] == 0:
            return False
        cleared = body[:11] + b"\0" + body[12:]
        os.pwrite(fd, cleared + struct.pack("<I", lookup3(cleared)), offset)
        os.fsync(fd)
        return True
    finally:
        os.close(fd)
