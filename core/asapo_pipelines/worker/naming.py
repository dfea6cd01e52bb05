"""Where a pipeline's streams, errors and status live on the transport.

A stream named in the pipeline file (`outputs: {spectra: spectra}`) is a data source of that name;
inside it, ASAP::O streams are scans: the first is `default`, and a source moves on to the next
scan by finishing its stream with a `next_stream`. Processors write each output into the stream of
the same name as the input it came from, so the scan structure carries through the pipeline.

Errors go to the data source `<pipeline>.errors`, one stream per unit instance; status to
`<pipeline>.status`, one stream per unit replica. Pipeline stream names cannot hold a dot, so
neither can collide with a user's stream.
"""

from __future__ import annotations

import re

FIRST_STREAM = "default"


def data_source_for(stream_name: str) -> str:
    return stream_name


def group_name(pipeline: str, instance: str) -> str:
    """The consumer group a unit's replicas share (letters, digits, '-' and '_' only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{pipeline}_{instance}")


def errors_source(pipeline: str) -> str:
    return f"{pipeline}.errors"


def status_source(pipeline: str) -> str:
    return f"{pipeline}.status"


def status_stream(instance: str, replica: int) -> str:
    return f"{instance}.{replica}"
