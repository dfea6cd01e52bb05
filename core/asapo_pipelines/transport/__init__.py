"""Transports: how units exchange messages (ASAP::O semantics, embedded store or real ASAP::O).

``open_transport({"embedded": {"path": ...}})`` or ``open_transport({"asapo": {...}})`` returns a
`Transport`; see docs/transports.md. Backends are imported only when opened.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
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
    check_not_lost,
    holds_data_source,
    lost_data_sources,
)
from asapo_pipelines.transport.errors import (
    CorruptPayload,
    DuplicateId,
    EndOfStream,
    IndexLost,
    MissingId,
    NoData,
    StorageError,
    StreamFinished,
    TransportConfigError,
    TransportError,
    Unavailable,
)
from asapo_pipelines.transport.options import OpenOptions, resolved_options

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel

    from asapo_pipelines.catalog import Catalog

#: the core's transports (registered by `asapo_pipelines.default_backends`); others come from
#: plugins through the `register_transports` hook
BACKENDS = ("embedded", "asapo")


#: the core's transports that can open a store for reading alone (`open_transport(read_only=)`)
READS_ONLY = ("embedded",)


def open_transport(
    spec: Mapping[str, Any], catalog: Catalog | None = None, *, read_only: bool = False
) -> Transport:
    """The transport a pipeline file's ``transport:`` section (resolved) describes.

    ``spec`` is ``{name: options}``: the runtime of the transport registered under ``name``
    opens it. Options from `TransportSection.spec()` (`OpenOptions`) are opened as they are; a
    plugin transport's plain mapping is its section in a pipeline file, validated by its config
    model first as `pipeline run` does (relative paths against the current directory). The
    core's runtimes check their options themselves. Give the ``catalog`` when one is loaded;
    without one, the core's transports open directly and another name is looked up in the
    (cached) listing, so a plugin's transport opens without importing every plugin.

    ``read_only`` is for commands that only read (`pipeline runs`, `tail`, `streams`): a store
    kept in a folder (the embedded one) is opened without writing anything, so that one
    archived on a read-only file system can be inspected; a service is opened as it is.
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
        options = dict(options or {})
        if read_only and found.kind in READS_ONLY:
            options["read_only"] = True
        transport: Transport = opener(options)
        return transport
    with _plugin_code(found.where, "failed to open"):
        if not isinstance(options, OpenOptions):
            options = _section_options(found, options, catalog)
        transport = opener(dict(options))
    return _guard(transport, found.where)


def _section_options(found: _Found, section: Any, catalog: Catalog | None) -> OpenOptions:
    """A plugin transport's section (`open_transport({"filebus": {...}})`, as a plugin's contract
    tests call it) validated by its config model, as `pipeline run` does: unknown keys and bad
    values refused in one sentence, defaults filled, `open_options` applied. Without a pipeline
    file, relative paths are relative to the current directory."""
    from pydantic import ValidationError

    from asapo_pipelines.plugin_manager import describe_exception

    model = _config_model(found, catalog)
    try:
        config = model.model_validate(dict(section or {}))
    except ValidationError as exc:
        raise TransportConfigError(
            f"the {found.where} refuses its options: {describe_exception(exc)}"
        ) from None
    return resolved_options(config, Path.cwd())


def _config_model(found: _Found, catalog: Catalog | None) -> type[BaseModel]:
    """The config model of a plugin's transport: from the catalog, else from its plugin alone
    (the listing holds no models; the other plugins are not imported)."""
    if catalog is None:
        from asapo_pipelines.catalog import Catalog, entry_point_sources

        sources = [s for s in entry_point_sources() if s.distribution == found.distribution]
        catalog = Catalog.from_sources(sources)
    descriptor = catalog.transports.get(found.kind)
    if descriptor is None:  # the listing was older than the plugin installed now
        raise TransportConfigError(
            f"the {found.where} is no longer registered by its plugin; see `pipeline plugins`"
        )
    return descriptor.config


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
    "IndexLost",
    "Message",
    "MissingId",
    "NoData",
    "OpenOptions",
    "Producer",
    "StorageError",
    "StreamFinished",
    "StreamInfo",
    "Transport",
    "TransportConfigError",
    "TransportError",
    "Unavailable",
    "check_not_lost",
    "holds_data_source",
    "lost_data_sources",
    "open_transport",
    "resolved_options",
]
