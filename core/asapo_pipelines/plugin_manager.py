"""A typed facade over pluggy, so core code never calls an untyped hook.

Each plugin's hook implementations are called one plugin at a time, each call guarded, so that
a plugin that raises is reported with its name and does not stop the others.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from asapo_pipelines import PROJECT, hookspecs, interrupts
from asapo_pipelines.descriptor import (
    CommandDescriptor,
    ExecutorDescriptor,
    FormatDescriptor,
    TransportDescriptor,
    UnitDescriptor,
)
from asapo_pipelines.errors import PluginError

#: hook -> (the descriptor class it registers, what the catalog calls its entries)
BACKEND_HOOKS: dict[str, tuple[type[Any], str]] = {
    "register_transports": (TransportDescriptor, "transport"),
    "register_executors": (ExecutorDescriptor, "executor"),
    "register_formats": (FormatDescriptor, "format"),
    "register_commands": (CommandDescriptor, "command"),
}


def describe_exception(exc: BaseException) -> str:
    """One line for an exception, pydantic validation errors condensed to their first problems."""
    from pydantic import ValidationError

    from asapo_pipelines.errors import PipelinesError

    if isinstance(exc, PipelinesError):
        return exc.message
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:3]:
            loc = ".".join(str(p) for p in err["loc"]) or "descriptor"
            parts.append(f"{loc}: {_said(err)}")
        more = f" (and {exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
        return "; ".join(parts) + more
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _said(err: Any) -> str:
    """A validation error's message, a descriptor's name patterns said in words: a plugin
    author reads "lower case <namespace>.<name>" faster than the regular expression."""
    from asapo_pipelines import descriptor as d

    if err.get("type") == "string_pattern_mismatch":
        words = {
            d.UNIT_NAME_PATTERN: "lower case <namespace>.<name> (letters, digits, - and _; the "
            "namespace usually your package's)",
            d.PORT_NAME_PATTERN: "lower case letters, digits and _, starting with a letter",
            d.RUNTIME_PATTERN: "an import string package.module:Class",
            d.BACKEND_NAME_PATTERN: "lower case letters, digits and _, starting with a letter",
            d.COMMAND_NAME_PATTERN: "lower case letters, digits and -, starting with a letter",
            d.CONTENT_TYPE_PATTERN: "a content type <type>/<subtype> in lower case",
        }.get(str((err.get("ctx") or {}).get("pattern")))
        if words is not None:
            return f"must be {words}, not {err.get('input')!r}"
    # a descriptor's own check (`config model X must refuse unknown keys`) is the sentence
    return str(err["msg"]).removeprefix("Value error, ")


def _hook_failure(hook_name: str, exc: Exception, name: str | None) -> str:
    """One line for a hook that raised. A backend descriptor the hook built invalid is named as
    a registered mapping is (`invalid transport descriptor for filebus: config: ...`): the
    catalog then tells a pipeline file naming it that it is installed but broken."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return f"{hook_name} raised {describe_exception(exc)}"
    if hook_name in BACKEND_HOOKS and name is not None:
        return f"invalid {BACKEND_HOOKS[hook_name][1]} descriptor for {name}: " + (
            describe_exception(exc)
        )
    return f"{hook_name} built an invalid descriptor: {describe_exception(exc)}"


@dataclass
class Registration:
    """What one plugin registered: valid descriptors and one reason per rejected call."""

    units: list[UnitDescriptor] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: transports, executors, formats and commands, each list in the order registered
    transports: list[TransportDescriptor] = field(default_factory=list)
    executors: list[ExecutorDescriptor] = field(default_factory=list)
    formats: list[FormatDescriptor] = field(default_factory=list)
    commands: list[CommandDescriptor] = field(default_factory=list)


class PluginManager:
    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)

    def register(self, plugin: ModuleType | object, name: str) -> None:
        """Register a plugin object; raises PluginError when its hooks do not match the API."""
        try:
            self._pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(describe_exception(exc)) from exc
        unknown = [
            hook_name
            for hook_name in dir(plugin)
            if self._pm.parse_hookimpl_opts(plugin, hook_name) is not None
            and not hasattr(hookspecs, hook_name)
        ]
        if unknown:
            self._pm.unregister(name=name)
            raise PluginError(
                f"implements unknown hook {unknown[0]}; known hooks: "
                + ", ".join(sorted(self.hook_names()))
            )

    def hook_names(self) -> list[str]:
        return [n for n in dir(hookspecs) if self._pm.parse_hookspec_opts(hookspecs, n)]

    def _impls(self, hook_name: str, plugin_name: str) -> list[pluggy.HookImpl]:
        hook = getattr(self._pm.hook, hook_name)
        return [impl for impl in hook.get_hookimpls() if impl.plugin_name == plugin_name]

    def _call_each(self, hook_name: str, plugin_name: str, **kwargs: Any) -> list[str]:
        """Call one plugin's implementations of a hook; return one line per failure."""
        from asapo_pipelines.descriptor import VALIDATING_NAME

        errors = []
        for impl in self._impls(hook_name, plugin_name):
            VALIDATING_NAME.set(None)
            try:
                impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
            except Exception as exc:
                interrupts.reraise_if_interrupted(exc)
                errors.append(_hook_failure(hook_name, exc, VALIDATING_NAME.get()))
        return errors

    def _collect(
        self, hook_name: str, cls: type[Any], what: str, plugin_name: str, errors: list[str]
    ) -> list[Any]:
        """Call one plugin's `hook_name` with a ``register`` that validates each call on its own
        (a descriptor of `cls` or a mapping of its fields); one line per rejected call."""
        found: list[Any] = []

        def register(item: Any) -> None:
            try:
                if isinstance(item, cls):
                    descriptor = item
                elif isinstance(item, Mapping):
                    descriptor = cls.model_validate(dict(item))
                else:
                    raise PluginError(f"registered a {type(item).__name__}, not a {cls.__name__}")
            except Exception as exc:
                interrupts.reraise_if_interrupted(exc)
                label = item.get("name") if isinstance(item, Mapping) else None
                noun = "descriptor" if what == "unit" else f"{what} descriptor"
                prefix = f"invalid {noun} for {label}" if label else f"invalid {noun}"
                errors.append(f"{prefix}: {describe_exception(exc)}")
                return
            found.append(descriptor)

        errors.extend(self._call_each(hook_name, plugin_name, register=register))
        return found

    def register_units(self, plugin_name: str) -> Registration:
        """Collect the unit descriptors one plugin registers, each validated on its own."""
        result = Registration()
        result.units = self._collect(
            "register_units", UnitDescriptor, "unit", plugin_name, result.errors
        )
        return result

    def register_all(self, plugin_name: str) -> Registration:
        """Everything one plugin registers: units, transports, executors, formats, commands."""
        result = self.register_units(plugin_name)
        for hook_name, (cls, what) in BACKEND_HOOKS.items():
            setattr(
                result,
                f"{what}s",
                self._collect(hook_name, cls, what, plugin_name, result.errors),
            )
        return result

    def registered_nothing(
        self, plugin: ModuleType | object, plugin_name: str, registration: Registration
    ) -> str | None:
        """Why a plugin that loaded registered nothing through any hook, said as its likely
        slip; None when it registered something, failed (its errors say why), or implements a
        checking hook (a plugin may only check pipelines). pluggy skips a function that is not
        marked @hookimpl, or is named unlike every hookspec, without a word."""
        kinds = ("units", "transports", "executors", "formats", "commands")
        if registration.errors or any(getattr(registration, kind) for kind in kinds):
            return None
        hooks = self.hook_names()
        implemented = [h for h in hooks if self._impls(h, plugin_name)]
        if any(not h.startswith("register_") for h in implemented):
            return None
        if implemented:
            return f"its hook {implemented[0]} ran without calling register"
        functions = [
            n for n in dir(plugin) if not n.startswith("_") and callable(getattr(plugin, n, None))
        ]
        unmarked = [n for n in functions if n in hooks]
        if unmarked:
            return (
                f"its function {unmarked[0]} is not marked @hookimpl, so it never runs; put "
                "`@hookimpl` (from asapo_pipelines.sdk) on the line above it"
            )
        for name in functions:
            near = difflib.get_close_matches(name, hooks, n=1, cutoff=0.8)
            if near:
                return (
                    f"its function {name} is named like no hook, so it never runs; did you mean "
                    f"{near[0]}? (and mark it @hookimpl)"
                )
        return (
            "it implements no hook; a hook is a function named after one ("
            + ", ".join(h for h in hooks if h.startswith("register_"))
            + ") and marked @hookimpl"
        )

    def check_online(
        self, plugin_name: str, pipeline: Any, catalog: Any
    ) -> tuple[list[tuple[tuple[str, ...], str, str]], list[str]]:
        """One plugin's online findings (path, code, message), and one line per failure."""
        return self._findings("check_online", plugin_name, pipeline, catalog)

    def check_pipeline(
        self, plugin_name: str, pipeline: Any, catalog: Any
    ) -> tuple[list[tuple[tuple[str, ...], str, str]], list[str]]:
        """One plugin's offline findings across units (path, code, message), and one line per
        failure."""
        return self._findings("check_pipeline", plugin_name, pipeline, catalog)

    def _findings(
        self, hook_name: str, plugin_name: str, pipeline: Any, catalog: Any
    ) -> tuple[list[tuple[tuple[str, ...], str, str]], list[str]]:
        findings: list[tuple[tuple[str, ...], str, str]] = []

        def report(path: tuple[str, ...], code: str, message: str) -> None:
            findings.append((tuple(str(p) for p in path), code, message))

        errors = self._call_each(
            hook_name, plugin_name, pipeline=pipeline, catalog=catalog, report=report
        )
        return findings, errors
