"""Errors of the NeXus writer: one clear sentence each."""

from __future__ import annotations

from asapo_pipelines.sdk import PipelinesError, UnitStorageError


class NexusWriterError(PipelinesError):
    """A message cannot be stored, or the file cannot be opened for writing."""


class FileHeldOpen(NexusWriterError, UnitStorageError):
    """Another process holds HDF5's lock on the file: closing it there is the remedy, not a
    change of configuration, so the worker's restarts apply (a storage error, not exit 78)."""
