"""`core.identity`: passes each message through unchanged."""

from __future__ import annotations

from asapo_pipelines.sdk.units import Message, Processor


class Identity(Processor):
    def process(self, message: Message) -> None:
        # the payload is forwarded as received (no decode, no copy) with its metadata
        self.emit_raw("output", message.payload, message.metadata)
