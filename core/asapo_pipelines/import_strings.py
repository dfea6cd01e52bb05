"""Import strings (`package.module:Name.attr`): how descriptors and the command table name what
is imported only when it is used.

A light module (it imports only `importlib`): the CLI shell resolves commands with it without
paying for pydantic, which `descriptor` needs.
"""

from __future__ import annotations

import importlib
from typing import Any


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
