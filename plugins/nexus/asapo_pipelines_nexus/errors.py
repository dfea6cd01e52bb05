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
    known, as when a restarted writer finds it gone); `changed` that another program changed
    the file itself in place (emptied it, wrote into it), so its entries may be gone. The sink
    says it with the run and the remedy (`units.gone_sentence`)."""

    def __init__(
        self,
        path: Path,
        what: str,
        entries: int,
        *,
        kept: bool | None = None,
        changed: bool = False,
    ) -> None:
        self.path, self.what, self.entries, self.kept = path, what, entries, kept
        self.changed = changed
        super().__init__(f"nexus.writer stops: {path} {what} while it was being written")


class ForeignFile(NexusWriterError):
    """The file at the path is one HDF5 cannot write in SWMR mode (not HDF5, or an HDF5 file
    of the old default format): moving it aside is the remedy. `problem` completes "<path>
    ..."; the sink says it with the run's resume command (`units.foreign_sentence`)."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(
            f"nexus.writer cannot write {path}: it {problem}; move that file aside (rename "
            "it), then run the pipeline again: the writer starts a new file at that path"
        )
