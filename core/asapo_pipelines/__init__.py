"""asapo-pipelines: near-real-time beamline pipelines from one YAML file.

The package root stays light (no pydantic, no pluggy) so that `import asapo_pipelines`
costs nothing; the names plugin authors need are resolved on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Entry-point group and pluggy project name shared by every plugin.
PROJECT = "asapo_pipelines"
#: The core's distribution name: the catalog's built-in plugin, the pins of a compiled job, the
#: line `--version` prints first. Defined here, the lightest module, so every layer can import it.
CORE_DISTRIBUTION = "asapo-pipelines"

_LAZY = {
    "hookimpl": "asapo_pipelines.hookspecs",
    "UnitDescriptor": "asapo_pipelines.descriptor",
    "Port": "asapo_pipelines.descriptor",
    "Resources": "asapo_pipelines.descriptor",
    "Params": "asapo_pipelines.descriptor",
}

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.descriptor import Params, Port, Resources, UnitDescriptor
    from asapo_pipelines.hookspecs import hookimpl

__all__ = ["PROJECT", "Params", "Port", "Resources", "UnitDescriptor", "__version__", "hookimpl"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asapo_pipelines' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
