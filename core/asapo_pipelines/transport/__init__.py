"""Transports: how units exchange messages (ASAP::O semantics, embedded store or real ASAP::O).

``open_transport({"embedded": {"path": ...}})`` or ``open_transport({"asapo": {...}})`` returns a
`Transport`; see docs/transports.md. Backends are imported only when opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asapo_pipelines.transport.base import (
    DEFAULT_LEASE_SECONDS,
    Consumer,
    Message,
    Producer,
    StreamInfo,
    Transport,
)
from asapo_pipelines.transport.errors import (
    CorruptPayload,
    DuplicateId,
    EndOfStream,
    MissingId,
    NoData,
    StorageError,
    StreamFinished,
    TransportConfigError,
    TransportError,
    Unavailable,
)

BACKENDS = ("embedded", "asapo")


def open_transport(spec: Mapping[str, Any]) -> Transport:
    """The transport a pipeline file's ``transport:`` section (resolved) describes."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise TransportConfigError(
            "a transport is given as exactly one of "
            + ", ".join(f"{{{b}: {{...}}}}" for b in BACKENDS)
        )
    ((kind, options),) = spec.items()
    options = dict(options or {})
    if kind == "embedded":
        from asapo_pipelines.transport.embedded import EmbeddedTransport

        if "path" not in options:
            raise TransportConfigError("the embedded transport needs a path")
        path = options.pop("path")
        _no_extra(kind, options, {"fsync", "create", "retention"})
        return EmbeddedTransport(path, **options)
    if kind == "asapo":
        from asapo_pipelines.transport.asapo import AsapoTransport

        return AsapoTransport.from_spec(options)
    raise TransportConfigError(f"unknown transport {kind!r}; choose one of {', '.join(BACKENDS)}")


def _no_extra(kind: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        raise TransportConfigError(
            f"unknown option{'s' if len(extra) > 1 else ''} for the {kind} transport: "
            + ", ".join(extra)
        )


def __getattr__(name: str) -> Any:
    # the backends' classes by name, imported on first use
    if name == "EmbeddedTransport":
        from asapo_pipelines.transport.embedded import EmbeddedTransport

        return EmbeddedTransport
    if name == "AsapoTransport":
        from asapo_pipelines.transport.asapo import AsapoTransport

        return AsapoTransport
    raise AttributeError(name)


__all__ = [
    "BACKENDS",
    "DEFAULT_LEASE_SECONDS",
    "Consumer",
    "CorruptPayload",
    "DuplicateId",
    "EndOfStream",
    "Message",
    "MissingId",
    "NoData",
    "Producer",
    "StorageError",
    "StreamFinished",
    "StreamInfo",
    "Transport",
    "TransportConfigError",
    "TransportError",
    "Unavailable",
    "open_transport",
]
