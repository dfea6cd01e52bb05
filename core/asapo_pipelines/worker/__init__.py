"""The worker runtime: runs one unit of a pipeline against a transport (`pipeline worker`)."""

from __future__ import annotations

from asapo_pipelines.worker.naming import (
    FIRST_STREAM,
    data_source_for,
    errors_source,
    group_name,
    status_source,
    status_stream,
)

__all__ = [
    "FIRST_STREAM",
    "data_source_for",
    "errors_source",
    "group_name",
    "status_source",
    "status_stream",
]
