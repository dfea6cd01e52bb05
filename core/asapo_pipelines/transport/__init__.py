"""Transports: how units exchange messages (ASAP::O semantics, embedded store or real ASAP::O).

``open_transport({"embedded": {"path": ...}})`` or ``open_transport({"asapo": {...}})`` returns a
`Transport`; see docs/transports.md. Backends are imported only when opened.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from asapo_pipelines import CORE_DISTRIBUTION
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
    found = _find(str(kind), catalog)
    opener = _import(found)
    if found.distribution is None:  # the core's: its failures are the core's bugs
        transport: Transport = opener(dict(options or {}))
        return transport
    with _plugin_code(found.where, "failed to open"):
        transport = opener(dict(options or {}))
    return _guard(transport, found.where)


class _Found(NamedTuple):
    """A registered transport: its name, runtime and plugin (None: the core's own)."""

    kind: str
    runtime: str
    distribution: str | None

    @property
    def where(self) -> str:
        return f"transport {self.kind} ({self.distribution})" if self.distribution else "transport"


@contextmanager
def _plugin_code(where: str, doing: str) -> Iterator[None]:
    """A plugin transport's own exception (a client library's, a bug) as one sentence naming
    the transport and its plugin, which the command prints and a worker ends with; the errors
    it raises on purpose keep their sentence (TransportError and the other PipelinesErrors),
    and NotImplementedError still says "not offered" (`data_sources` of a service)."""
    from asapo_pipelines.errors import PipelinesError

    try:
        yield
    except (PipelinesError, NotImplementedError):
        raise
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise TransportError(f"the {where} {doing}: {describe_exception(exc)}") from exc


def _guarded(method: Callable[..., Any], where: str, doing: str) -> Callable[..., Any]:
    @functools.wraps(method)  # keeps the plugin's signature: the worker asks for `prefetch`
    def call(*args: Any, **kwargs: Any) -> Any:
        with _plugin_code(where, doing):
            return method(*args, **kwargs)

    return call


#: the methods of a plugin's transport guarded by `_guard`, and what a failure of each is
_GUARDED = {
    "producer": "failed to make a producer",
    "consumer": "failed to make a consumer",
    "data_sources": "failed to list its data sources",
    "close": "failed to close",
}


def _guard(transport: Transport, where: str) -> Transport:
    """`transport` with its own exceptions while handing out producers and consumers (a
    consumer class missing a method, a client library's error) made one sentence naming it, as
    while it opens. The plugin's object itself, its methods wrapped on the instance: its type
    and its other methods (prune, drop_stream...) stay the plugin's, and what its producers and
    consumers raise later is theirs (the worker reports those per message). An object without
    an instance dict (__slots__) is left as it is."""
    for name, doing in _GUARDED.items():
        method = getattr(transport, name)
        if getattr(method, "_guarded", False):  # a transport the plugin hands out twice
            continue
        wrapped = _guarded(method, where, doing)
        wrapped._guarded = True  # type: ignore[attr-defined]
        try:
            setattr(transport, name, wrapped)
        except AttributeError:
            return transport
    return transport


def _names(catalog: Catalog | None) -> list[str]:
    if catalog is not None and catalog.transports:
        return list(catalog.transports)
    from asapo_pipelines.listing import load_listing

    try:
        return [t["name"] for t in load_listing(strict=False).transports] or list(BACKENDS)
    except Exception:  # listing failed: the core's names still say what is meant
        return list(BACKENDS)


def _find(kind: str, catalog: Catalog | None) -> _Found:
    """The transport registered as ``kind``: in the catalog, else among the core's, else in the
    (cached) listing; an unknown name is one sentence with the names there are."""
    if catalog is not None and kind in catalog.transports:
        descriptor = catalog.transports[kind]
        core = descriptor.distribution in (None, CORE_DISTRIBUTION)
        return _Found(kind, descriptor.runtime, None if core else descriptor.distribution)
    if catalog is None:
        from asapo_pipelines.default_backends import TRANSPORTS

        if kind in TRANSPORTS:
            return _Found(kind, TRANSPORTS[kind].runtime, None)
        from asapo_pipelines.listing import load_listing

        for entry in load_listing(strict=False).transports:
            if entry["name"] == kind:
                return _Found(kind, entry["runtime"], entry["distribution"])
    import difflib

    names = _names(catalog)
    near = difflib.get_close_matches(kind, names, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise TransportConfigError(
        f"unknown transport {kind!r}{hint}; choose one of {', '.join(names)}"
    )


def _import(found: _Found) -> Any:
    """The runtime callable of a transport; a failed import is one sentence naming it."""
    from asapo_pipelines.import_strings import import_runtime

    try:
        return import_runtime(found.runtime)
    except Exception as exc:
        from asapo_pipelines.plugin_manager import describe_exception

        raise TransportConfigError(
            f"the {found.where} cannot be loaded from {found.runtime}: {describe_exception(exc)}"
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
