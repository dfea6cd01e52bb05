"""The catalog: discovers plugins through entry points and collects what they register.

Units, transports, executors and payload formats are all registered the same way (one hook each,
light descriptors, runtimes as import strings) and collected here, per plugin.

Each entry point is loaded on its own. A plugin that fails to import, registers an invalid
descriptor, or claims a unit name another distribution also claims is kept as a record (name,
distribution, version, reason) for `pipeline plugins`; every other unit still lists. Strict mode
(tests, CI) turns any such problem into an error. Listing never imports a unit's runtime.

Environment:
- ``ASAPO_PIPELINES_PLUGINS``: comma-separated plugin (entry point) or distribution names; only
  these are loaded (the built-in plugin always is).
- ``ASAPO_PIPELINES_DISABLE_PLUGINS``: comma-separated names never loaded.
- ``ASAPO_PIPELINES_STRICT=1``: raise on the first broken plugin.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from asapo_pipelines import CORE_DISTRIBUTION, PROJECT, __version__, interrupts
from asapo_pipelines.errors import CatalogError, PluginError, UnknownUnitError
from asapo_pipelines.import_strings import import_runtime

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.descriptor import (
        CommandDescriptor,
        ExecutorDescriptor,
        FormatDescriptor,
        TransportDescriptor,
        UnitDescriptor,
    )
    from asapo_pipelines.plugin_manager import PluginManager

ENV_ONLY = "ASAPO_PIPELINES_PLUGINS"
ENV_DISABLE = "ASAPO_PIPELINES_DISABLE_PLUGINS"
ENV_STRICT = "ASAPO_PIPELINES_STRICT"

BUILTIN_PLUGIN = "core"
#: the start of the warning on a plugin that loads and registers nothing (`registered_nothing`)
REGISTERS_NOTHING = "registers nothing: "
BUILTIN_MODULE = "asapo_pipelines.builtin"


@dataclass
class PluginRecord:
    """One plugin as `pipeline plugins` shows it."""

    name: str
    distribution: str
    version: str
    module: str
    units: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    transports: list[str] = field(default_factory=list)
    executors: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    #: what `pipeline plugins` warns of and its --strict refuses (a plugin registering nothing)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> Literal["ok", "broken"]:
        return "broken" if self.errors else "ok"

    def label(self) -> str:
        return f"plugin {self.name} ({self.distribution} {self.version})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "units": self.units,
            "transports": self.transports,
            "executors": self.executors,
            "formats": self.formats,
            "commands": self.commands,
            "errors": self.errors,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class PluginSource:
    """Where a plugin comes from: an entry point to load, or an object already at hand."""

    name: str
    distribution: str
    version: str
    module: str
    obj: ModuleType | object | None = None
    #: the distribution's metadata directory (its change means a reinstall)
    metadata_path: str | None = None

    def load(self) -> ModuleType | object:
        if self.obj is not None:
            return self.obj
        return import_runtime(self.module)


def _split_env(value: str | None) -> set[str]:
    return {item.strip() for item in (value or "").split(",") if item.strip()}


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def builtin_source() -> PluginSource:
    return PluginSource(BUILTIN_PLUGIN, CORE_DISTRIBUTION, __version__, BUILTIN_MODULE)


def _named_after(plugin: str, distribution: str, namespace: str) -> bool:
    """Whether a plugin is the likely provider of units named `namespace.<name>`: its entry
    point, or its distribution (`acme`, `asapo-pipelines-acme`), is named after it."""
    return namespace in (_normalize(plugin), _normalize(distribution).split("-")[-1])


@dataclass(frozen=True)
class LeftOut:
    """An installed plugin the allow or block list keeps from loading, and which one."""

    source: PluginSource
    #: the environment variable that leaves it out, and its value
    variable: str
    value: str

    def provides(self, namespace: str) -> bool:
        """Whether the plugin is the likely provider of units named `namespace.<name>`: its
        entry point, or its distribution (`asapo-pipelines-acme`), is named after it."""
        return _named_after(self.source.name, self.source.distribution, namespace)

    def sentence(self) -> str:
        s = self.source
        why = (
            f"disabled by {self.variable}={self.value}"
            if self.variable == ENV_DISABLE
            else f"not loaded: {self.variable}={self.value} does not name it"
        )
        return f"the plugin {s.name} ({s.distribution} {s.version}) is installed but {why}"


def _all_entry_points(
    env: Mapping[str, str] | None = None,
) -> tuple[list[PluginSource], list[LeftOut]]:
    """The installed plugins the allow and block lists let through, in a stable order, and
    those they leave out."""
    from importlib.metadata import entry_points

    env = os.environ if env is None else env
    only = {_normalize(n) for n in _split_env(env.get(ENV_ONLY))}
    disabled = {_normalize(n) for n in _split_env(env.get(ENV_DISABLE))}
    sources, left_out = [], []
    for ep in entry_points(group=PROJECT):
        dist = getattr(ep, "dist", None)
        dist_name = dist.name if dist is not None else "unknown"
        version = dist.version if dist is not None else "unknown"
        keys = {_normalize(ep.name), _normalize(dist_name)}
        path = getattr(dist, "_path", None)  # importlib.metadata.PathDistribution
        source = PluginSource(
            ep.name, dist_name, version, ep.value, metadata_path=path and str(path)
        )
        if keys & disabled:
            left_out.append(LeftOut(source, ENV_DISABLE, env.get(ENV_DISABLE, "")))
        elif only and not keys & only:
            left_out.append(LeftOut(source, ENV_ONLY, env.get(ENV_ONLY, "")))
        else:
            sources.append(source)

    def order(s: PluginSource) -> tuple[str, str]:
        return (s.name, s.distribution)

    return sorted(sources, key=order), sorted(left_out, key=lambda x: order(x.source))


def entry_point_sources(env: Mapping[str, str] | None = None) -> list[PluginSource]:
    """The installed plugins, filtered by the allow and block lists, in a stable order."""
    return _all_entry_points(env)[0]


def _lists_set(env: Mapping[str, str]) -> bool:
    """Whether the allow or block list is given: without either, no plugin is left out and no
    name in them can be wrong, and the entry points need not be read a second time."""
    return bool(_split_env(env.get(ENV_ONLY)) or _split_env(env.get(ENV_DISABLE)))


def left_out_plugins(env: Mapping[str, str] | None = None) -> list[LeftOut]:
    """The installed plugins the allow or block list keeps from loading."""
    env = os.environ if env is None else env
    return _all_entry_points(env)[1] if _lists_set(env) else []


def plugin_list_typos(env: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per name in the allow or block list that names no installed plugin (its
    entry point or distribution): a typo there loads nothing, or disables nothing, silently."""
    env = os.environ if env is None else env
    if not _lists_set(env):
        return []
    loaded, left_out = _all_entry_points(env)
    known = {BUILTIN_PLUGIN: BUILTIN_PLUGIN, _normalize(CORE_DISTRIBUTION): CORE_DISTRIBUTION}
    for source in [*loaded, *(x.source for x in left_out)]:
        known[_normalize(source.name)] = source.name
        if source.distribution != "unknown":
            known[_normalize(source.distribution)] = source.distribution
    sentences = []
    for variable in (ENV_ONLY, ENV_DISABLE):
        for name in sorted(_split_env(env.get(variable))):
            if _normalize(name) in known:
                continue
            near = difflib.get_close_matches(_normalize(name), list(known), n=1)
            hint = f"; did you mean {known[near[0]]}?" if near else ""
            sentences.append(
                f"{variable}={env.get(variable)} names {name}, which is no installed plugin{hint}"
            )
    return sentences


def installed_sources(env: Mapping[str, str] | None = None) -> list[PluginSource]:
    """The built-in plugin, then the installed ones the allow and block lists let through."""
    return [builtin_source(), *entry_point_sources(env)]


#: what plugins register, in the order `pipeline plugins` shows it
KINDS_OF_ENTRY = ("unit", "transport", "executor", "format", "command")


def _settle(kind: str, claims: dict[str, list[tuple[PluginRecord, Any]]]) -> dict[str, Any]:
    """name -> descriptor for every name claimed once; each claimant of a name claimed more than
    once gets an error. Units are sorted by name; backends keep their registration order (the
    built-in ones first), which is the order of their branches in the schema and in messages.
    A backend name the core plugin registers stays the core's: another plugin cannot replace
    the embedded transport of every pipeline by installing itself."""
    settled: dict[str, Any] = {}
    for name, entries in claims.items():
        if len(entries) == 1:
            record, descriptor = entries[0]
            settled[name] = descriptor
            getattr(record, f"{kind}s").append(name)
            continue
        claimants = list({id(r): r for r, _ in entries}.values())
        core = [r for r in claimants if r.name == BUILTIN_PLUGIN]
        if kind != "unit" and core and len(claimants) > 1:
            settled[name] = next(d for r, d in entries if r is core[0])
            getattr(core[0], f"{kind}s").append(name)
            for record in claimants:
                if record is not core[0]:
                    record.errors.append(
                        f"{kind} {name} is already provided by {CORE_DISTRIBUTION}; not loaded"
                    )
            continue
        owner = _namespace_owner(name, claimants) if kind == "unit" else None
        if owner is not None:
            # a unit named after its plugin stays that plugin's: installing another package
            # that claims it too never takes it away from the pipelines that use it
            settled[name] = next(d for r, d in entries if r is owner)
            owner.units.append(name)
            for record in claimants:
                if record is not owner:
                    record.errors.append(
                        f"unit {name}: the namespace {owner.name} belongs to the plugin "
                        f"{owner.name} ({owner.distribution} {owner.version}); not loaded "
                        "(name your units after your own plugin)"
                    )
            continue
        for record in claimants:
            others = [r for r in claimants if r is not record]
            if others:
                who = ", ".join(f"{r.distribution} {r.version}" for r in others)
                reason = f"{_also_registered(kind, name)}{who}; neither is loaded"
            else:
                reason = f"{kind} {name} is registered more than once by {record.distribution}"
            record.errors.append(reason)
    return dict(sorted(settled.items())) if kind == "unit" else settled


def _also_registered(kind: str, name: str) -> str:
    """The start of a clash's error on each claimant's record: `clash_of` finds the claimants
    by it (a catalog from the listing cache keeps the records' errors, not the clash)."""
    return f"{kind} {name} is also registered by "


def _namespace_owner(name: str, claimants: list[PluginRecord]) -> PluginRecord | None:
    """Of the plugins claiming unit `name`, the one whose entry point is named like the unit's
    namespace (`xas` for `xas.normalize`), when exactly one is and it claims the name once."""
    namespace = name.partition(".")[0]
    owners = [r for r in claimants if r.name == namespace]
    return owners[0] if len(owners) == 1 and len(claimants) > 1 else None


def clash_of(name: str, plugins: Iterable[PluginRecord]) -> str | None:
    """Why unit `name` is not in a catalog although plugins register it: the distributions
    that claim it, so that neither is loaded, and how to keep one; None when none does."""
    prefix = _also_registered("unit", name)
    claimants = [r for r in plugins if any(e.startswith(prefix) for e in r.errors)]
    if len(claimants) < 2:
        return None
    who = [f"{r.distribution} {r.version}" for r in claimants]
    both = f"both {who[0]} and {who[1]}" if len(who) == 2 else ", ".join(who)
    names = " or ".join(r.name for r in claimants)
    return (
        f"unit {name} is registered by {both}, so none of them is loaded: uninstall one, or "
        f"leave one out by its plugin name ({names}) in {ENV_DISABLE}"
    )


def _refuse_core_commands(claims: dict[str, list[tuple[PluginRecord, Any]]]) -> None:
    """A plugin's command named like one of the core's own (`pipeline validate`...) is not
    loaded, and its plugin is told why: the command line would never reach it."""
    from asapo_pipelines.core_commands import CORE_COMMANDS

    for name in [n for n in claims if n in CORE_COMMANDS]:
        for record, _ in claims.pop(name):
            record.errors.append(f"command {name} is a command of {CORE_DISTRIBUTION}; not loaded")


def _refuse_core_units(claims: dict[str, list[tuple[PluginRecord, Any]]]) -> None:
    """A plugin's unit in the core's namespace (`core.identity`...) is not loaded, and its
    plugin is told why: as a clash, it would unload the core's unit from every pipeline that
    uses it, just by being installed."""
    prefix = f"{BUILTIN_PLUGIN}."
    for name in [n for n in claims if n.startswith(prefix)]:
        kept = []
        for record, descriptor in claims[name]:
            if record.name == BUILTIN_PLUGIN:
                kept.append((record, descriptor))
                continue
            record.errors.append(
                f"unit {name}: the namespace {prefix[:-1]} belongs to {CORE_DISTRIBUTION}; not "
                "loaded (name your units after your own package)"
            )
        if kept:
            claims[name] = kept
        else:
            del claims[name]


def _check_defaults(units: dict[str, UnitDescriptor], records: list[PluginRecord]) -> None:
    """A strict catalog (CI, `make_catalog`, `pipeline schema --check` with
    ASAPO_PIPELINES_STRICT=1) reports a plugin whose params model has a default its own rules
    refuse, or has no JSON Schema (editors, `show-unit` and `validate` need one). Only here: it
    builds every params model and its schema, which a listing must not."""
    for name, unit in units.items():
        no_schema = unit.params_schema_problem()
        problems = [no_schema] if no_schema else unit.params_default_problems()
        for record in records:
            if problems and name in record.units:
                record.errors.extend(f"unit {name}: {p}" for p in problems)


def _check_backend_models(catalog: Catalog) -> None:
    """As `_check_defaults` for units: a transport's or executor's config model without a JSON
    Schema (the editor schema leaves it out) or with a default its own rules refuse marks its
    plugin broken in a strict catalog."""
    for what, backends in (("transport", catalog.transports), ("executor", catalog.executors)):
        for name, backend in backends.items():
            no_schema = backend.config_schema_problem()
            problems = [no_schema] if no_schema else backend.config_default_problems(what)
            for record in catalog.plugins:
                if problems and name in getattr(record, f"{what}s"):
                    record.errors.extend(f"{what} {name}: {p}" for p in problems)


def _check_formats(
    units: dict[str, UnitDescriptor],
    formats: dict[str, FormatDescriptor],
    records: list[PluginRecord],
) -> None:
    """A unit whose port names a payload format no loaded plugin registers is not loaded, and
    its plugin is reported broken, so a typo shows in `pipeline plugins` instead of failing
    every message inside a running worker."""
    for name, unit in list(units.items()):
        problem = _unknown_format(unit, formats)
        if problem is None:
            continue
        del units[name]
        for record in records:
            if name in record.units:
                record.units.remove(name)
                record.errors.append(f"unit {name}: {problem}")


def _unknown_format(unit: UnitDescriptor, formats: dict[str, FormatDescriptor]) -> str | None:
    """What is wrong with the first port of `unit` whose format is not in `formats`."""
    ports = [("input", p) for p in unit.inputs] + [("output", p) for p in unit.outputs]
    for direction, port in ports:
        if port.format not in formats:
            near = difflib.get_close_matches(port.format, list(formats), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            return (
                f"{direction} port {port.name} names payload format {port.format!r}, which no "
                f"installed plugin registers{hint}; known: {', '.join(formats)}"
            )
    return None


def runtime_missing(runtime: str) -> str | None:
    """Why the module of a runtime import string cannot be found, looked up without importing
    it (a unit's runtime may import xraylarch or torch); None when it is there (whether it
    imports, and holds the name after ``:``, only importing tells)."""
    from asapo_pipelines.import_strings import missing_module

    # the same answer `pipeline validate` gives (P207)
    missing = missing_module(runtime)
    if missing is None:
        return None
    near = f" (did you mean {missing.near}?)" if missing.near else ""
    return f"its runtime {runtime} cannot be found: there is no module {missing.module}{near}"


class Catalog:
    """The units available in this environment, and a record of every plugin looked at."""

    def __init__(
        self,
        units: dict[str, UnitDescriptor],
        plugins: list[PluginRecord],
        *,
        transports: dict[str, TransportDescriptor] | None = None,
        executors: dict[str, ExecutorDescriptor] | None = None,
        formats: dict[str, FormatDescriptor] | None = None,
        commands: dict[str, CommandDescriptor] | None = None,
    ) -> None:
        self.units = units
        self.plugins = plugins
        #: name under `transport:` / `deploy:` / a port's `format` -> its descriptor
        self.transports = transports or {}
        self.executors = executors or {}
        self.formats = formats or {}
        #: `pipeline <name>` of a plugin (the core's own command line is not in the catalog)
        self.commands = commands or {}
        #: the plugins loaded, registered by their records' names, for the hooks a pipeline
        #: file is checked with (`check_pipeline`); None for a catalog not built from plugins
        self.manager: PluginManager | None = None
        #: the installed plugins the allow or block list kept out (`Catalog.load` fills it)
        self.left_out: list[LeftOut] = []

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def load(cls, *, strict: bool | None = None, env: Mapping[str, str] | None = None) -> Catalog:
        """The catalog of installed plugins (entry points), plus the built-in plugin."""
        env = os.environ if env is None else env
        if strict is None:
            strict = env.get(ENV_STRICT, "").lower() in ("1", "true", "yes")
        catalog = cls.from_sources(installed_sources(env), strict=strict)
        catalog.left_out = left_out_plugins(env)
        return catalog

    @classmethod
    def from_sources(cls, sources: Iterable[PluginSource], *, strict: bool = False) -> Catalog:
        # pluggy and pydantic are imported here, not at module level: a cached listing needs
        # neither
        from asapo_pipelines.plugin_manager import PluginManager, describe_exception

        manager = PluginManager()
        records: list[PluginRecord] = []
        # kind ("unit", "transport"...) -> name -> every (plugin, descriptor) that claims it
        claimed: dict[str, dict[str, list[tuple[PluginRecord, Any]]]] = {
            kind: {} for kind in KINDS_OF_ENTRY
        }
        for source in sources:
            record = PluginRecord(source.name, source.distribution, source.version, source.module)
            records.append(record)
            try:
                plugin = source.load()
            except Exception as exc:  # sys.exit() in its import too: see import_runtime
                interrupts.reraise_if_interrupted(exc)
                record.errors.append(f"import failed: {describe_exception(exc)}")
                continue
            try:
                manager.register(plugin, source.name)
            except PluginError as exc:
                record.errors.append(str(exc))
                continue
            registration = manager.register_all(source.name)
            record.errors.extend(registration.errors)
            idle = manager.registered_nothing(plugin, source.name, registration)
            if idle is not None:
                record.warnings.append(f"{REGISTERS_NOTHING}{idle}")
            stamp = {"version": source.version, "distribution": source.distribution}
            for kind in KINDS_OF_ENTRY:
                for descriptor in getattr(registration, f"{kind}s"):
                    stamped = descriptor.model_copy(update=stamp)
                    claimed[kind].setdefault(stamped.name, []).append((record, stamped))

        _refuse_core_commands(claimed["command"])
        _refuse_core_units(claimed["unit"])
        found = {kind: _settle(kind, claims) for kind, claims in claimed.items()}
        _check_formats(found["unit"], found["format"], records)
        from asapo_pipelines.transport.formats import use_formats

        use_formats(found["format"])
        catalog = cls(
            found["unit"],
            records,
            transports=found["transport"],
            executors=found["executor"],
            formats=found["format"],
            commands=found["command"],
        )
        catalog.manager = manager
        if strict:
            catalog.check_defaults()
        if strict and catalog.broken:
            first = catalog.broken[0]
            raise PluginError(f"{first.label()} is broken: {first.errors[0]}")
        return catalog

    def check_defaults(self) -> Catalog:
        """Report on its plugin's record each unit whose params model has a default its own
        rules refuse or no JSON Schema, and each transport or executor whose config model has
        either (as a strict catalog does when it loads); builds every such model and its
        schema."""
        _check_defaults(self.units, self.plugins)
        _check_backend_models(self)
        return self

    def check_runtimes(self) -> Catalog:
        """Report on its plugin's record each runtime whose module cannot be found
        (`runtime_missing`), for `pipeline plugins --strict` (a plugin's CI): otherwise only a
        worker, or `pipeline deploy`, finds out."""
        for what in KINDS_OF_ENTRY:
            for name, descriptor in getattr(self, f"{what}s").items():
                problem = runtime_missing(descriptor.runtime)
                if problem is not None:
                    self.report(what, name, problem)
        return self

    def report(self, what: str, name: str, problem: str) -> None:
        """`problem` on the record of the plugin that registered the `what` (``unit``,
        ``executor``...) called `name`: the plugin is shown broken, with it."""
        for record in self.plugins:
            if name in getattr(record, f"{what}s"):
                record.errors.append(f"{what} {name}: {problem}")

    # -- queries -------------------------------------------------------------------------------
    @property
    def broken(self) -> list[PluginRecord]:
        return [p for p in self.plugins if p.errors]

    def __contains__(self, name: object) -> bool:
        return name in self.units

    def __len__(self) -> int:
        return len(self.units)

    def suggest(self, name: str) -> str | None:
        matches = difflib.get_close_matches(name, list(self.units), n=1, cutoff=0.6)
        return matches[0] if matches else None

    def get(self, name: str) -> UnitDescriptor:
        try:
            return self.units[name]
        except KeyError:
            clash = clash_of(name, self.plugins)
            if clash is not None:
                raise CatalogError(clash) from None
            raise UnknownUnitError(name, self.suggest(name)) from None

    def clash(self, name: str) -> str | None:
        """Why unit `name` is missing although plugins register it (`clash_of`), or None."""
        return None if name in self.units else clash_of(name, self.plugins)

    def filter(
        self,
        *,
        kind: str | None = None,
        namespace: str | None = None,
        status: str | None = None,
    ) -> list[UnitDescriptor]:
        return [
            d
            for d in self.units.values()
            if (kind is None or d.kind == kind)
            and (namespace is None or d.namespace == namespace)
            and (status is None or d.status == status)
        ]

    def why_not_provided(self, namespace: str) -> str | None:
        """Why no unit of `namespace` is here although a plugin for it is installed: it is left
        out by the allow or block list, or it loads and registers nothing; None otherwise, and
        when a loaded plugin provides units of `namespace` (then a misspelt name is likelier)."""
        if any(name.startswith(f"{namespace}.") for name in self.units):
            return None
        for left in self.left_out:
            if left.provides(namespace):
                return left.sentence()
        for record in self.plugins:
            idle = [w for w in record.warnings if w.startswith(REGISTERS_NOTHING)]
            if idle and _named_after(record.name, record.distribution, namespace):
                return f"{record.label()} is installed but {idle[0]}"
        return None

    def plugin(self, name: str) -> PluginRecord:
        for record in self.plugins:
            if name in (record.name, record.distribution):
                return record
        raise CatalogError(f"no plugin named {name}")
