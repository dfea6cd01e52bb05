"""Import strings (`package.module:Name.attr`): how descriptors and the command table name what
is imported only when it is used.

A light module (it imports only `importlib`): the CLI shell resolves commands with it without
paying for pydantic, which `descriptor` needs.
"""

from __future__ import annotations

import importlib
from typing import Any


def import_runtime(runtime: str) -> Any:
    """The object a runtime import string (`package.module:Name.attr`) names, imported now."""
    module_name, _, qualname = runtime.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
