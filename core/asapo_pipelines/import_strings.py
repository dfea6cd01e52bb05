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
from importlib.machinery import ModuleSpec, PathFinder
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


def top_level_spec(name: str) -> ModuleSpec | None:
    """Where a top-level module is, without importing it: on sys.path, or through another
    finder of sys.meta_path (an editable install's, which maps the name to the project's
    source folder: on it the cache was off for every listing)."""
    spec = PathFinder.find_spec(name)
    if spec is not None:
        return spec
    for finder in sys.meta_path:
        if finder is PathFinder or not hasattr(finder, "find_spec"):
            continue
        try:
            spec = finder.find_spec(name, None)
        except Exception:  # a third-party finder: any failure means "not found here"
            continue
        if spec is not None and spec.has_location:
            return spec
    return None


def module_spec(module: str) -> ModuleSpec | None:
    """Where a module (``package.sub.module``, the part of an import string before ``:``) is,
    found without importing it or its packages (whose ``__init__`` may import what a runtime
    needs: xraylarch, torch); None when it cannot be found."""
    parts = module.partition(":")[0].split(".")
    spec = top_level_spec(parts[0])
    for depth in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = PathFinder.find_spec(".".join(parts[: depth + 1]), spec.submodule_search_locations)
    return spec


# -- finding a runtime's module without importing it ----------------------------------------
#: where a module's submodules are searched (a package's `__path__`); None: the top level
_Locations = list[str] | None


class MissingModule(NamedTuple):
    """The first module of a runtime's module path that is not installed."""

    #: `myxas.edgejump` for `myxas.edgejump:EdgeJump` when `myxas` is there but not `edgejump`
    module: str
    #: an installed module of a close name beside it (`myxas.edge_jump`), or None
    near: str | None = None


def missing_module(runtime: str) -> MissingModule | None:
    """Which module of `runtime`'s module path (`package.module:Name`) cannot be found, or None
    when it is there (or when this cannot tell, so that a valid pipeline is never refused).

    Nothing is imported while the module is found: a runtime may need seconds and hundreds of
    megabytes to import (xraylarch, torch) and `pipeline validate` must stay instant. So the
    path is walked as the import system would, each package's `__path__` taken from its spec
    rather than by running its `__init__` (`importlib.util.find_spec` of a dotted name would
    import every parent package). Only when that walk finds nothing are the parents imported
    (never the module itself), to confirm: a package may extend its `__path__` while it is
    imported (`pkgutil.extend_path`), which no spec shows. That costs a file already in error,
    and the worker would import them anyway."""
    module_name = runtime.partition(":")[0]
    try:
        walked = _walk(module_name)
        if walked is None or _found_by_importing_parents(module_name):
            return None
    except Exception:  # a finder or a parent package that fails: the worker will say it, and
        return None  # the failure is not "not installed"
    missing, locations = walked
    return MissingModule(missing, _near(missing, locations))


def _walk(module_name: str) -> tuple[str, _Locations] | None:
    """The first missing module on the way to `module_name`, with where it was looked for
    (to suggest a near name); None when every part is found."""
    parts = module_name.split(".")
    locations: _Locations = None
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        found, below = _find(name, locations)
        if not found:
            return name, locations
        if below is None and depth < len(parts):
            # a plain module, not a package: it has no submodules to find
            return ".".join(parts[: depth + 1]), None
        locations = below
    return None


def _find(name: str, locations: _Locations) -> tuple[bool, _Locations]:
    """Whether module `name` is there and, when it is a package, where its submodules are.

    A module already imported answers with its live `__path__`; otherwise the finders of
    `sys.meta_path` are asked as the import system asks them (path-based, editable installs'
    own finders, zip files), which reads directories but runs no module code."""
    if name in sys.modules:
        loaded = sys.modules[name]
        if loaded is None:  # the import system's mark of a blocked module: `import` refuses it
            return False, None
        path = getattr(loaded, "__path__", None)
        return True, list(path) if path is not None else None
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(name, locations, None) if find_spec is not None else None
        if spec is not None:
            below = spec.submodule_search_locations
            return True, list(below) if below is not None else None
    return False, None


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
