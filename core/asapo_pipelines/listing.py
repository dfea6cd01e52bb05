"""What `list-units`, `plugins` and `--version` show, served from a cache when nothing changed.

Listing needs only the units' summaries, but getting them means importing every plugin's
registration module, and with it every params model (600 pydantic classes cost about 0.25 s).
So the listing is cached per environment (interpreter, sys.path, allow and block lists) under
a fingerprint of every plugin computed without importing anything: its distribution's name,
version and metadata directory, and the size and mtime of each Python file of its top-level
package (so an edit in an editable install is seen, wherever the descriptors live). A plugin
whose module cannot be located without importing it disables the cache for that listing.

``ASAPO_PIPELINES_NO_CACHE=1`` turns the cache off; ``ASAPO_PIPELINES_CACHE_DIR`` moves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asapo_pipelines import __version__
from asapo_pipelines.catalog import (
    ENV_DISABLE,
    ENV_ONLY,
    ENV_STRICT,
    Catalog,
    PluginSource,
    installed_sources,
)
from asapo_pipelines.errors import PluginError
from asapo_pipelines.import_strings import module_spec

ENV_NO_CACHE = "ASAPO_PIPELINES_NO_CACHE"
ENV_CACHE_DIR = "ASAPO_PIPELINES_CACHE_DIR"
# 3: commands are listed (a listing without them would hide `pipeline run`)
# 4: plugin records carry warnings (a plugin that registers nothing)
CACHE_FORMAT = 4


@dataclass
class Listing:
    """Units, transports, executors, formats and commands as summary dicts (see `summary_dict`), and
    plugin records as dicts."""

    units: list[dict[str, Any]]
    plugins: list[dict[str, Any]]
    from_cache: bool = False
    transports: list[dict[str, Any]] = field(default_factory=list)
    executors: list[dict[str, Any]] = field(default_factory=list)
    formats: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Listing:
        return cls(
            [d.summary_dict() for d in catalog.units.values()],
            [p.to_dict() for p in catalog.plugins],
            transports=[d.summary_dict() for d in catalog.transports.values()],
            executors=[d.summary_dict() for d in catalog.executors.values()],
            formats=[d.summary_dict() for d in catalog.formats.values()],
            commands=[d.summary_dict() for d in catalog.commands.values()],
        )

    @property
    def broken(self) -> list[dict[str, Any]]:
        return [p for p in self.plugins if p["errors"]]

    def filter(
        self, *, kind: str | None = None, namespace: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            u
            for u in self.units
            # a connector's role (source, sink) selects as a kind too
            if (kind is None or kind in (u["kind"], u.get("role")))
            and (namespace is None or u["name"].split(".", 1)[0] == namespace)
            and (status is None or u["status"] == status)
        ]


def module_files(module: str) -> list[str] | None:
    """Paths of the files a plugin's registration could come from, found without importing:
    every module of its top-level package (descriptors often live in a subpackage, as in the
    layout `pipeline new-unit` writes), or a single-file module and its siblings."""
    spec = module_spec(module)
    if spec is None or not spec.has_location or not spec.origin:
        return None
    top = module_spec(module.partition(":")[0].split(".")[0])
    if top is None:
        return None
    try:
        if top.submodule_search_locations:
            return sorted(
                str(p)
                for folder in top.submodule_search_locations
                for p in Path(folder).rglob("*.py")
            )
        return sorted(str(p) for p in Path(spec.origin).parent.glob("*.py"))
    except OSError:
        return None


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


def fingerprint(sources: list[PluginSource]) -> str | None:
    """A hash that changes whenever any plugin could register something different."""
    h = hashlib.sha256(f"{CACHE_FORMAT}:{__version__}".encode())
    for source in sources:
        files = module_files(source.module)
        if files is None:
            return None
        h.update(f"|{source.name}|{source.module}|{source.distribution}|{source.version}".encode())
        if source.metadata_path:
            h.update(_stat(source.metadata_path).encode())
        for path in files:
            h.update(_stat(path).encode())
    return h.hexdigest()


def _cache_file(env: Mapping[str, str]) -> Path:
    base = env.get(ENV_CACHE_DIR) or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "asapo-pipelines",
    )
    where = json.dumps([sys.executable, sys.path, env.get(ENV_ONLY), env.get(ENV_DISABLE)])
    return Path(base) / f"listing-{hashlib.sha256(where.encode()).hexdigest()[:16]}.json"


def _read(path: Path, key: str) -> Listing | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("fingerprint") != key:
        return None
    return Listing(
        data["units"],
        data["plugins"],
        from_cache=True,
        **{k: data.get(k, []) for k in _BACKENDS},
    )


_BACKENDS = ("transports", "executors", "formats", "commands")


def _write(path: Path, key: str, listing: Listing) -> None:
    data = {"fingerprint": key, "units": listing.units, "plugins": listing.plugins}
    data.update({k: getattr(listing, k) for k in _BACKENDS})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)  # atomic: concurrent listings never read half a file
    except OSError:
        pass  # a read-only home only costs speed


def load_listing(*, strict: bool | None = None, env: Mapping[str, str] | None = None) -> Listing:
    env = os.environ if env is None else env
    if strict is None:
        strict = env.get(ENV_STRICT, "").lower() in ("1", "true", "yes")
    sources = installed_sources(env)
    use_cache = env.get(ENV_NO_CACHE, "").lower() not in ("1", "true", "yes")
    key = fingerprint(sources) if use_cache else None
    path = _cache_file(env)
    listing = _read(path, key) if key else None
    if listing is None:
        listing = Listing.from_catalog(Catalog.from_sources(sources, strict=False))
        if key:
            _write(path, key, listing)
    if strict and listing.broken:
        first = listing.broken[0]
        raise PluginError(
            f"plugin {first['name']} ({first['distribution']} {first['version']}) is broken: "
            f"{first['errors'][0]}"
        )
    return listing


def remember(catalog: Catalog, *, env: Mapping[str, str] | None = None) -> None:
    """Write the listing of a catalog just loaded in full (by `pipeline run`, or a worker that
    found no listing): the next workers learn from it which plugins provide their units."""
    env = os.environ if env is None else env
    if env.get(ENV_NO_CACHE, "").lower() in ("1", "true", "yes"):
        return
    sources = installed_sources(env)
    key = fingerprint(sources)
    path = _cache_file(env)
    if key and _read(path, key) is None:
        _write(path, key, Listing.from_catalog(catalog))


def sources_for(
    units: Iterable[str],
    transports: Iterable[str] = (),
    executors: Iterable[str] = (),
    *,
    env: Mapping[str, str] | None = None,
) -> list[PluginSource] | None:
    """The built-in plugin and the plugins (entry points) that provide `units`, `transports`
    and `executors`, as the current listing says, without importing any plugin; None when the
    listing is missing, stale, or does not name them all (then the whole catalog must be
    loaded)."""
    env = os.environ if env is None else env
    if env.get(ENV_NO_CACHE, "").lower() in ("1", "true", "yes"):
        return None
    sources = installed_sources(env)
    key = fingerprint(sources)
    listing = _read(_cache_file(env), key) if key else None
    if listing is None:
        return None
    needed = {(sources[0].name, sources[0].distribution)}  # the built-in plugin, always
    units = set(units)
    # the payload formats those units' ports name may come from other plugins
    formats = {
        port["format"]
        for unit in listing.units
        if unit["name"] in units
        for port in (*unit.get("inputs", []), *unit.get("outputs", []))
    }
    for kind, wanted in (
        ("units", units),
        ("transports", set(transports)),
        ("executors", set(executors)),
        ("formats", formats),
    ):
        provider = {
            name: (record["name"], record["distribution"])
            for record in listing.plugins
            if not record["errors"]
            for name in record.get(kind, [])
        }
        if not wanted <= provider.keys():
            return None
        needed |= {provider[name] for name in wanted}
    return [s for s in sources if (s.name, s.distribution) in needed]
