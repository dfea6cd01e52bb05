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

import io
import os
import struct
from pathlib import Path
from typing import Any

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


def _checked_superblock(head: bytes) -> tuple[int, bytes]:
    """(offset, superblock without its checksum) once its checksum is what it should be."""
    offset, length = _superblock(head)
    body = head[offset : offset + length]
    (stored,) = struct.unpack("<I", head[offset + length : offset + length + 4])
    if lookup3(body) != stored:
        raise RecoveryError("the superblock checksum does not match")
    return offset, body


def _stored_eof(body: bytes) -> int:
    """Where the file ends as its superblock says (base address + end-of-file address)."""
    size = body[9]  # size of offsets: base address, extension address, end of file, root
    base = int.from_bytes(body[12 : 12 + size], "little")
    return base + int.from_bytes(body[12 + 2 * size : 12 + 3 * size], "little")


def _cleared(body: bytes) -> bytes:
    """The superblock with its "open for write" mark cleared, and its checksum."""
    cleared = body[:11] + b"\0" + body[12:]
    return cleared + struct.pack("<I", lookup3(cleared))


def clear_status_flags(path: str | Path) -> bool:
    """Clear the "open for write" mark of a file whose writer is dead; True if it was set."""
    fd = os.open(Path(path), os.O_RDWR)
    try:
        try:
            offset, body = _checked_superblock(os.pread(fd, _HEAD, 0))
        except RecoveryError as exc:
            raise RecoveryError(f"{exc}; not touching it") from None
        if body[11] == 0:
            return False
        os.pwrite(fd, _cleared(body), offset)
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def damage(path: str | Path) -> str | None:
    """Why the file at `path` is damaged as far as its first bytes and its size tell, as the
    end of "<path> is damaged (...)"; None when they look whole (or it is no file of the
    format the writer writes: `swmr_format_problem` says that). Cheap, and read before HDF5
    opens the file: HDF5 refuses a file shorter than its superblock says, and a reader in SWMR
    mode retries a read past its end for minutes instead of failing."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return None
    offset = _signature_at(head)
    if offset is None or head[offset + 8] not in (2, 3):
        return None
    try:
        offset, body = _checked_superblock(head)
    except RecoveryError as exc:
        return str(exc)
    eof = _stored_eof(body)
    if size < eof:
        return f"it ends at byte {size:,}, before the end its superblock records, byte {eof:,}"
    return None


class SalvageView(io.RawIOBase):
    """A damaged file read as HDF5 would read it were it whole, for h5py's `fileobj` driver,
    without changing a byte of it: its superblock's "open for write" mark cleared (a killed
    writer's file), and bytes missing at its end (a truncated file) read as zeros, so that
    HDF5 opens it without SWMR retries and what is still there can be copied; an object that
    lay in the missing part fails to read (its checksum), and is left behind."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._fd = os.open(Path(path), os.O_RDONLY)
        try:
            offset, body = _checked_superblock(os.pread(self._fd, _HEAD, 0))
        except RecoveryError:
            os.close(self._fd)
            raise
        self._patch = (offset, _cleared(body))
        self._size = max(os.fstat(self._fd).st_size, _stored_eof(body))
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = start + pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = bytearray(os.pread(self._fd, len(view), self._pos))
        offset, patch = self._patch
        # the cleared superblock where the read overlaps it
        low, high = max(offset, self._pos), min(offset + len(patch), self._pos + len(data))
        if low < high:
            data[low - self._pos : high - self._pos] = patch[low - offset : high - offset]
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)  # h5py reads the rest (past the real end) as zeros

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
