"""Recognising outputs already written, so a redelivered input does not produce them twice.

Every output carries a provenance key derived from its inputs (or from the key a source gave).
When an input comes back after a crash (delivery count > 1), the worker reads the output stream
backwards from its end to the moment the input was written: an earlier attempt can only have
written its outputs after that, so this bounded scan sees them, and the worker sends only the
outputs whose keys it did not find.
"""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk.units import PROVENANCE_KEY
from asapo_pipelines.transport import EndOfStream, MissingId, StreamFinished

#: tolerance for clocks of different hosts writing one stream
CLOCK_SLACK_SECONDS = 5.0


def provenance_key(metadata: dict[str, Any]) -> str | None:
    prov = metadata.get(PROVENANCE_KEY)
    if isinstance(prov, dict):
        key = prov.get("key")
        return key if isinstance(key, str) else None
    return None


def written_keys(consumer: Any, stream: str, since: float | None = None) -> set[str]:
    """Provenance keys in `stream`, scanning back to messages written before `since`."""
    try:
        last = consumer.get_last(stream)
    except (EndOfStream, StreamFinished):
        return set()
    keys: set[str] = set()
    msg_id = last.id
    while msg_id >= 1:
        try:
            msg = consumer.get_by_id(stream, msg_id)
        except (MissingId, EndOfStream, StreamFinished):
            msg_id -= 1
            continue
        key = provenance_key(msg.metadata)
        if key is not None:
            keys.add(key)
        if since is not None and msg.timestamp < since - CLOCK_SLACK_SECONDS:
            break
        msg_id -= 1
    return keys


def source_keys(consumer: Any, unit_label: str) -> set[str]:
    """Every key a source unit already sent into any stream of a data source."""
    keys: set[str] = set()
    for info in consumer.streams():
        for msg_id in range(1, info.last_id + 1):
            try:
                msg = consumer.get_by_id(info.name, msg_id)
            except (MissingId, EndOfStream, StreamFinished):
                continue
            prov = msg.metadata.get(PROVENANCE_KEY)
            if isinstance(prov, dict) and prov.get("unit") == unit_label and prov.get("key"):
                keys.add(prov["key"])
    return keys
