"""Errors of the NeXus writer: one clear sentence each."""

from __future__ import annotations

from asapo_pipelines.sdk import PipelinesError


class NexusWriterError(PipelinesError):
    """A message cannot be stored, or the file cannot be opened for writing."""
