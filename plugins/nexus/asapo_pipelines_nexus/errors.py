"""Errors of the NeXus writer: one clear sentence each."""

from __future__ import annotations

from pathlib import Path

from asapo_pipelines.sdk import PipelinesError, UnitStorageError


class NexusWriterError(PipelinesError):
    """A message cannot be stored, or the file cannot be opened for writing."""


class FileHeldOpen(NexusWriterError, UnitStorageError):
    """Another process holds HDF5's lock on the file: closing it there is the remedy, not a
    change of configuration, so the worker's restarts apply (a storage error, not exit 78)."""


class FileGone(UnitStorageError):
    """The path no longer names the file the writer has open (removed, moved, replaced while
    it wrote it): nothing more is written there nor acknowledged. `what` completes "<path>
    ..." ("was removed"); `entries` is how many complete entries the file held, and `kept`
    whether that file is still somewhere (moved) rather than in no folder at all (None: not
    known, as when a restarted writer finds it gone). The sink
    says it with the run and the remedy (`units.gone_sentence`)."""

    def __init__(self, path: Path, what: str, entries: int, *, kept: bool | None = None) -> None:
        self.path, self.what, self.entries, self.kept = path, what, entries, kept
        super().__init__(f"nexus.writer stops: {path} {what} while it was being written")
