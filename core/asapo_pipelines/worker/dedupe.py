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
from asapo_pipelines.transport import CorruptPayload, EndOfStream, MissingId, StreamFinished

#: tolerance for clocks of different hosts writing one stream
CLOCK_SLACK_SECONDS = 5.0


def provenance_key(metadata: dict[str, Any]) -> str | None:
    prov = metadata.get(PROVENANCE_KEY)
    if isinstance(prov, dict):
        key = prov.get("key")
        return key if isinstance(key, str) else None
    return None


def read_metadata(consumer: Any, stream: str, msg_id: int) -> Any:
    """The message `msg_id` of `stream` for its metadata (its payload left unread where the
    transport can), or None when it is not there. Provenance lives in the metadata: a message
    whose payload is damaged still tells what was written (the consumer hands it out as
    `CorruptPayload.damaged`)."""
    try:
        return consumer.get_metadata_by_id(stream, msg_id)
    except CorruptPayload as exc:
        return exc.damaged
    except (MissingId, EndOfStream, StreamFinished):
        return None


def provenance_run(metadata: dict[str, Any]) -> str | None:
    """The run a message was written in, from its provenance."""
    prov = metadata.get(PROVENANCE_KEY)
    run = prov.get("run") if isinstance(prov, dict) else None
    return run if isinstance(run, str) else None


class KeyIndex:
    """The keys of one output stream, read incrementally: after a crash many inputs come back
    at once, and each check reads only what the previous checks have not read yet.

    With `run`, only the keys of messages written in that run count: a stream that every run
    of a pipeline writes (its error stream) de-duplicates within a run, so a restarted worker
    reports a bad input once, while a new run reports it again."""

    def __init__(self, consumer: Any, stream: str, *, run: str | None = None) -> None:
        self.consumer = consumer
        self.stream = stream
        self.run = run
        self.keys: set[str] = set()
        self.top = 0  # highest id read
        self.bottom = 0  # lowest id read (0: nothing read yet)
        self.reached = float("inf")  # timestamp of the oldest message read

    def _read(self, msg_id: int) -> float | None:
        msg = read_metadata(self.consumer, self.stream, msg_id)
        if msg is None:
            return None
        key = provenance_key(msg.metadata)
        if key is not None and (self.run is None or provenance_run(msg.metadata) == self.run):
            self.keys.add(key)
        return float(msg.timestamp)

    def contains(self, key: str, since: float | None) -> bool:
        """Whether `key` was written, looking back to messages written before `since`."""
        try:
            last = self._last_id()
        except (EndOfStream, StreamFinished):
            return False
        if self.top == 0:
            self.top, self.bottom = last, last + 1  # first look: read back from the end
        else:
            for msg_id in range(last, self.top, -1):  # written since the last look
                self._read(msg_id)
            self.top = max(self.top, last)
        limit = None if since is None else since - CLOCK_SLACK_SECONDS
        while self.bottom > 1 and (limit is None or self.reached >= limit):
            self.bottom -= 1
            ts = self._read(self.bottom)
            if ts is not None:
                self.reached = min(self.reached, ts)
        return key in self.keys

    def _last_id(self) -> int:
        """The stream's last id. Only the id is needed: the last message's payload file gone or
        damaged (a store repaired by hand, pruned under a resumed run) must not stop a unit
        from looking up its keys, which live in the metadata; a unit restoring its state then
        failed at start-up, restart after restart."""
        try:
            return int(self.consumer.get_last(self.stream).id)
        except CorruptPayload as exc:
            if exc.damaged is None:
                raise
            return int(exc.damaged.id)  # type: ignore[attr-defined]
        except MissingId:
            return int(self.consumer.stream_info(self.stream).last_id)


def user_key(key: str) -> str:
    """The key a unit gave `emit` (`key=`), from an output's provenance key
    (`sdk.units.keyed_output`: `<unit>|<port>|key:<key>`)."""
    parts = key.split("|", 2)  # unit labels and port names hold no "|"; keys may
    return parts[2].removeprefix("key:") if len(parts) == 3 else key


def source_keys(consumer: Any, unit_label: str) -> dict[str, str | None]:
    """Every key a source unit already sent into any stream of a data source, with the
    checksum of the payload sent under it where the transport keeps one (`Message.checksum`;
    read from the index, no payload read), else None."""
    keys: dict[str, str | None] = {}
    for info in consumer.streams():
        for msg_id in range(1, info.last_id + 1):
            msg = read_metadata(consumer, info.name, msg_id)
            prov = msg.metadata.get(PROVENANCE_KEY) if msg is not None else None
            if isinstance(prov, dict) and prov.get("unit") == unit_label and prov.get("key"):
                keys[prov["key"]] = getattr(msg, "checksum", None)
    return keys
