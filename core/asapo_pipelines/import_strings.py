"""Import strings (`package.module:Name.attr`): how descriptors and the command table name what
is imported only when it is used.

A light module (it imports only `importlib`): the CLI shell resolves commands with it without
paying for pydantic, which `descriptor` needs. `missing_module` says whether a runtime's module
is installed without importing it, for `pipeline validate`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from typing import Any, NamedTuple


class RuntimeImportExit(ImportError):
    """A plugin's module called `sys.exit()` (or raised SystemExit) while being imported."""


def import_runtime(runtime: str) -> Any:
    """The object a runtime import string (`package.module:Name.attr`, or a module alone, as
    entry points may name plugins) names, imported now.

    A module that exits while it is imported raises `RuntimeImportExit`, an ImportError: left
    a SystemExit, it would end the command or worker silently, with its exit code, instead of
    being reported as the plugin's fault in one sentence like any other failed import."""
    module_name, _, qualname = runtime.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except SystemExit as exc:
        raise RuntimeImportExit(
            f"importing {module_name} called sys.exit({exc.code!r})", name=module_name
        ) from None
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


# -- finding a module without importing it ---------------------------------------------------
#: where a module's submodules are searched (a package's `__path__`); None: the top level
_Locations = list[str] | None


class _Step(NamedTuple):
    """One module found on the way: its spec (None only for a module imported without one)
    and, for a package, where its submodules are (None for a plain module)."""

    spec: ModuleSpec | None
    below: _Locations


class _Walked(NamedTuple):
    """What the walk to a module found: its spec when every part is there; else the first part
    that is not, with where it was looked for (for `_near`)."""

    spec: ModuleSpec | None
    missing: str | None = None
    locations: _Locations = None


def _walk(module_name: str) -> _Walked:
    """Walk `package.sub.module` as the import system would, each package's `__path__` taken
    from its spec rather than by running its `__init__` (`importlib.util.find_spec` of a
    dotted name would import every parent package, which may import xraylarch or torch)."""
    parts = module_name.split(".")
    locations: _Locations = None
    step: _Step | None = None
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        step = _find(name, locations)
        if step is None:
            return _Walked(None, name, locations)
        if step.below is None and depth < len(parts):
            # a plain module, not a package: it has no submodules to find
            return _Walked(None, ".".join(parts[: depth + 1]))
        locations = step.below
    return _Walked(step.spec if step is not None else None)


def _find(name: str, locations: _Locations) -> _Step | None:
    """Module `name` as the import system would find it, or None when it would not.

    A module already imported answers with its live `__path__` (which `pkgutil.extend_path`
    may have grown), and one blocked (`sys.modules[name] = None`) is not there, as `import`
    says. Otherwise every finder of `sys.meta_path` is asked in turn, for top-level modules and
    submodules alike, as the import system asks them: path-based ones, an editable install's
    (which maps a name to the project's folder), a framework's that serves generated
    submodules. That reads directories but runs no module code."""
    if name in sys.modules:
        loaded = sys.modules[name]
        if loaded is None:
            return None
        path = getattr(loaded, "__path__", None)
        return _Step(getattr(loaded, "__spec__", None), list(path) if path is not None else None)
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, locations, None)
        except Exception:  # a third-party finder: any failure means "not found here"
            continue
        if spec is not None:
            below = spec.submodule_search_locations
            return _Step(spec, list(below) if below is not None else None)
    return None


def module_spec(module: str) -> ModuleSpec | None:
    """Where a module (``package.sub.module``, or an import string whose part before ``:`` is
    one) is, found without importing it or its packages; None when it cannot be found (or was
    imported without a spec). The listing cache reads its files from it."""
    try:
        return _walk(module.partition(":")[0]).spec
    except Exception:  # a spec of unexpected shape: the caller cannot locate the module
        return None


class MissingModule(NamedTuple):
    """The first module of a runtime's module path that is not installed."""

    #: `myxas.edgejump` for `myxas.edgejump:EdgeJump` when `myxas` is there but not `edgejump`
    module: str
    #: an installed module of a close name beside it (`myxas.edge_jump`), or None
    near: str | None = None


def missing_module(runtime: str) -> MissingModule | None:
    """Which module of `runtime`'s module path (`package.module:Name`) cannot be found, or None
    when it is there (or when this cannot tell, so that a valid pipeline is never refused).

    Found by `module_spec`'s walk, so nothing is imported while the module is there: a
    runtime may need seconds and hundreds of megabytes to import (xraylarch, torch) and
    `pipeline validate` must stay instant. Only when the walk finds nothing are the parents
    imported (never the module itself), to confirm: a package may extend its `__path__` while
    it is imported (`pkgutil.extend_path`), which no spec shows. That costs a file already in
    error, and the worker would import them anyway."""
    module_name = runtime.partition(":")[0]
    try:
        walked = _walk(module_name)
        if walked.missing is None or _found_by_importing_parents(module_name):
            return None
    except Exception:  # a parent package that fails: the worker will say it, and the
        return None  # failure is not "not installed"
    return MissingModule(walked.missing, _near(walked.missing, walked.locations))


def _found_by_importing_parents(module_name: str) -> bool:
    """The import system's own answer (it imports the parent packages, not the module)."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # a parent package is not there
        return False
    except SystemExit:  # a parent that exits must not end validate; its worker will say it
        return True


def _near(missing: str, locations: _Locations) -> str | None:
    """A module of a close name beside `missing` in its package (a typo's likely fix). None for
    a missing top-level package: the closest of every installed one is a guess, not a fix."""
    import difflib
    import pkgutil

    parent, _, last = missing.rpartition(".")
    if not parent or locations is None:
        return None
    names = [m.name for m in pkgutil.iter_modules(locations)]
    close = difflib.get_close_matches(last, names, n=1, cutoff=0.6)
    return f"{parent}.{close[0]}" if close else None
