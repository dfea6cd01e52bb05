"""Errors of the local executor, each one sentence for the user."""

from __future__ import annotations

from asapo_pipelines.errors import PipelinesError


class LocalRunError(PipelinesError):
    """The job cannot be run locally, or a local run cannot be found or controlled."""


class JobFailed(PipelinesError):
    """A run ended because a task failed for good; the message says which and why."""
