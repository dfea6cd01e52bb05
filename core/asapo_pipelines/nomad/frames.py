"""Decoding Nomad's framed log stream (`GET /v1/client/fs/logs/:alloc_id`).

The endpoint answers with a sequence of JSON objects written one after the other (not a JSON
array, not necessarily one per line): `{"File": ..., "Offset": ..., "Data": "<base64>"}` frames,
`{"File": ..., "FileEvent": "file deleted" | "file truncated"}` events, and `{}` heartbeats while
a followed log is quiet. Chunks of the HTTP body split frames anywhere, so the decoder buffers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from asapo_pipelines.nomad.errors import NomadServerError


@dataclass(frozen=True)
class Frame:
    data: bytes = b""
    file: str = ""
    offset: int = 0
    file_event: str = ""

    @property
    def heartbeat(self) -> bool:
        return not (self.data or self.file or self.file_event)


class FrameDecoder:
    """Feed bytes in any chunking; get complete frames out."""

    def __init__(self) -> None:
        self._buffer = ""
        self._pending = b""
        self._json = json.JSONDecoder()

    def feed(self, chunk: bytes) -> list[Frame]:
        # Keep an incomplete UTF-8 sequence for the next chunk (frames are ASCII in practice,
        # but the File name need not be).
        data = self._pending + chunk
        try:
            text = data.decode("utf-8")
            self._pending = b""
        except UnicodeDecodeError as exc:
            if exc.start < len(data) - 3:
                raise NomadServerError(
                    "Nomad's log stream is not valid UTF-8 JSON; is NOMAD_ADDR a Nomad agent?"
                ) from None
            text, self._pending = data[: exc.start].decode("utf-8"), data[exc.start :]
        self._buffer += text
        frames = []
        while True:
            stripped = self._buffer.lstrip(" \t\r\n,")
            if not stripped:
                self._buffer = ""
                break
            try:
                obj, end = self._json.raw_decode(stripped)
            except json.JSONDecodeError:
                self._buffer = stripped
                if len(stripped) > 64 * 1024 * 1024:
                    raise NomadServerError("Nomad's log stream sent an unreadable frame") from None
                break
            self._buffer = stripped[end:]
            frames.append(_frame(obj))
        return frames

    def close(self) -> None:
        if self._buffer.strip() or self._pending:
            raise NomadServerError("Nomad's log stream ended in the middle of a frame")


def _frame(obj: object) -> Frame:
    if not isinstance(obj, dict):
        raise NomadServerError("Nomad's log stream sent something that is not a frame")
    raw = obj.get("Data") or ""
    try:
        data = base64.b64decode(raw, validate=True) if raw else b""
    except (binascii.Error, TypeError):
        raise NomadServerError("Nomad's log stream sent a frame whose Data is not base64") from None
    return Frame(
        data=data,
        file=str(obj.get("File") or ""),
        offset=int(obj.get("Offset") or 0),
        file_event=str(obj.get("FileEvent") or ""),
    )


def decode_frames(chunks: Iterable[bytes]) -> Iterator[Frame]:
    """All non-heartbeat frames of a framed log body given as chunks."""
    decoder = FrameDecoder()
    for chunk in chunks:
        for frame in decoder.feed(chunk):
            if not frame.heartbeat:
                yield frame
    decoder.close()
