"""The runtime class of `nexus.writer`: a sink around `NexusWriter`.

Only a worker imports this module (h5py and numpy come with it). Each message is written by the
content type of the port it arrived on, under its provenance key, so a message delivered twice,
or sent again by a restarted upstream unit, is stored once.
"""

from __future__ import annotations

from typing import Any

from asapo_pipelines.sdk import Message, Sink
from asapo_pipelines_nexus.errors import NexusWriterError
from asapo_pipelines_nexus.writer import NexusWriter


def message_key(message: Message) -> str:
    """The producer's provenance key (stable across upstream restarts), else the address."""
    prov = message.provenance or {}
    if prov.get("key"):
        return str(prov["key"])
    return f"{message.data_source}/{message.stream}/{message.id}"


class NexusWriterSink(Sink):
    """`nexus.writer`: raw scans as NXxas entries, spectra and merges as NXprocess entries."""

    def on_start(self) -> None:
        # a relative `file` is relative to the working directory: the worker runs next to the
        # pipeline file
        self.writer = NexusWriter.from_params(self.params).open()
        self.written: dict[str, int] = {}
        self.duplicates = 0
        self.closed = False

    def process(self, message: Message) -> None:
        port = self.descriptor.input(message.port)
        if port is None:  # the worker feeds only declared ports; a clear sentence otherwise
            raise NexusWriterError(f"nexus.writer has no input port {message.port!r}")
        body = message.value
        if not isinstance(body, dict):
            raise NexusWriterError(
                f"message {message.data_source}/{message.stream}/{message.id} is not a JSON "
                f"object; nexus.writer stores {port.content_type} messages"
            )
        name = self.writer.write(port.content_type, body, message_key(message))
        if name is None:
            self.duplicates += 1
        else:
            self.written[port.name] = self.written.get(port.name, 0) + 1

    def flush(self) -> None:
        # every entry is flushed when written; flushing again makes the promise explicit
        if not self.closed:
            self.writer.file.flush()

    def on_shutdown(self) -> None:
        self.writer.close()
        self.closed = True

    def summary(self) -> dict[str, Any]:
        return {
            "file": str(self.writer.path.resolve()),
            "entries_written": sum(self.written.values()),
            **{f"{port}_written": n for port, n in sorted(self.written.items())},
            "duplicates_skipped": self.duplicates,
        }
