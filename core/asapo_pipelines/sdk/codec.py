"""Payload encoding for ports: the transport's formats, looked up by each port's `format`."""

from __future__ import annotations

from typing import Any


def encode(value: Any, fmt: str) -> tuple[bytes | memoryview | None, dict[str, Any]]:
    """Encode a value for a port of format `fmt`; returns the payload and its metadata."""
    from asapo_pipelines.transport import formats

    payload, meta = formats.encode(value, fmt)
    return payload, dict(meta)


def decode(payload: bytes | memoryview | None, metadata: dict[str, Any]) -> Any:
    """Decode a payload with the format recorded in its metadata."""
    from asapo_pipelines.transport import formats

    return formats.decode(payload, metadata)
