"""What a source's `restore()` is handed: a message it sent in an earlier run, payload on demand."""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk.units import Message
from asapo_pipelines.transport import CorruptPayload, EndOfStream, MissingId, StreamFinished


class SentMessage(Message):
    """A message a source sent in an earlier run of it, read for its metadata only; the payload
    is read from the store the first time `restore()` uses it, then kept.

    Sources restore from the metadata (a file's name, version and hash): reading every payload
    again would read the whole output at each resume, which for detector files is the size of
    the experiment. A payload that is damaged or gone reads as None, as its metadata is still
    what was sent."""

    def __init__(self, port: str, data_source: str, taken: Any, reader: Any) -> None:
        self._reader = reader
        self._unread = taken.payload is None  # the transport left it unread, or there is none
        super().__init__(
            port,
            data_source,
            taken.stream,
            taken.id,
            taken.payload,
            taken.metadata,
            taken.delivery_count,
            taken.timestamp,
        )

    @property
    def payload(self) -> bytes | memoryview | None:
        if self._unread:
            self._unread = False
            self._payload = self._read()
        return self._payload

    @payload.setter
    def payload(self, value: bytes | memoryview | None) -> None:
        self._payload = value

    def _read(self) -> bytes | memoryview | None:
        try:
            taken = self._reader.get_by_id(self.stream, self.id)
        except CorruptPayload:
            return None
        except (MissingId, EndOfStream, StreamFinished):
            return None  # pruned since it was listed
        payload: bytes | memoryview | None = taken.payload
        return payload
