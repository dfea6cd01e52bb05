"""Transports: how units exchange messages (ASAP::O semantics, embedded store or real ASAP::O).

``open_transport({"embedded": {"path": ...}})`` or ``open_transport({"asapo": {...}})`` returns a
`Transport`; see docs/transports.md. Backends are imported only when opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from asapo_pipelines.transport.base import (
    DEFAULT_LEASE_SECONDS,
    LEASE_MARGIN,
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

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog

#: the core's transports (registered by `asapo_pipelines.default_backends`); others come from
#: plugins through the `register_transports` hook
BACKENDS = ("embedded", "asapo")


def open_transport(spec: Mapping[str, Any], catalog: Catalog | None = None) -> Transport:
    """The transport a pipeline file's ``transport:`` section (resolved) describes.

    ``spec`` is ``{name: options}`` (`TransportSection.spec()`); the runtime of the transport
    registered under ``name`` opens it. Give the ``catalog`` when one is loaded; without one,
    the core's transports open directly and another name is looked up in the (cached) listing,
    so a plugin's transport opens without importing every plugin.
    """
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise TransportConfigError(
            "a transport is given as exactly one of "
            + ", ".join(f"{{{b}: {{...}}}}" for b in _names(catalog))
        )
    ((kind, options),) = spec.items()
    opener = _opener(str(kind), catalog)
    transport: Transport = opener(dict(options or {}))
    return transport


def _names(catalog: Catalog | None) -> list[str]:
    if catalog is not None and catalog.transports:
        return list(catalog.transports)
    from asapo_pipelines.listing import load_listing

    try:
        return [t["name"] for t in load_listing(strict=False).transports] or list(BACKENDS)
    except Exception:  # listing failed: the core's names still say what is meant
        return list(BACKENDS)


def _opener(kind: str, catalog: Catalog | None) -> Any:
    """The runtime callable of the transport registered as ``kind``."""
    runtime: str | None = None
    where = "transport"
    if catalog is not None and kind in catalog.transports:
        descriptor = catalog.transports[kind]
        runtime, where = descriptor.runtime, f"transport {kind} ({descriptor.distribution})"
    elif catalog is None:
        from asapo_pipelines.default_backends import TRANSPORTS

        if kind in TRANSPORTS:
            runtime = TRANSPORTS[kind].runtime
        else:
            from asapo_pipelines.listing import load_listing

            for entry in load_listing(strict=False).transports:
                if entry["name"] == kind:
                    runtime, where = entry["runtime"], f"transport {kind} ({entry['distribution']})"
    if runtime is None:
        import difflib

        names = _names(catalog)
        near = difflib.get_close_matches(kind, names, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise TransportConfigError(
            f"unknown transport {kind!r}{hint}; choose one of {', '.join(names)}"
        )
    from asapo_pipelines.import_strings import import_runtime

    try:
        return import_runtime(runtime)
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise TransportConfigError(
            f"the {where} cannot be loaded from {runtime}: {describe_exception(exc)}"
        ) from None


__all__ = [
    "BACKENDS",
    "DEFAULT_LEASE_SECONDS",
    "LEASE_MARGIN",
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
