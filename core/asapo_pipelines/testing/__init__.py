"""pytest plugin for plugin authors (loaded automatically through the `pytest11` entry point).

Fixtures:
- ``make_catalog(*plugins, builtin=True, strict=True)``: a Catalog built from plugin modules (or
  their import names, or any object with hook implementations) without installing them, so a
  plugin's tests can check its descriptors exactly as the installed catalog will see them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

# the in-process unit harness fixtures, re-exported so that pytest registers them
from asapo_pipelines.testing.fixtures import (  # noqa: F401
    run_chain,
    run_unit,
    unit_harness,
    unit_message,
)

if TYPE_CHECKING:  # pragma: no cover
    from asapo_pipelines.catalog import Catalog

MakeCatalog = Callable[..., "Catalog"]


def catalog_from_plugins(
    *plugins: ModuleType | str | object,
    builtin: bool = True,
    strict: bool = True,
    distribution: str = "test-plugins",
    version: str = "0.0.0",
) -> Catalog:
    """Build a catalog from plugin objects, as if each were an installed entry point."""
    from asapo_pipelines.catalog import Catalog, PluginSource, builtin_source

    sources = [builtin_source()] if builtin else []
    for plugin in plugins:
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        name = getattr(plugin, "__name__", type(plugin).__name__)
        sources.append(PluginSource(name, distribution, version, name, obj=plugin))
    return Catalog.from_sources(sources, strict=strict)


@pytest.fixture
def make_catalog() -> MakeCatalog:
    """Factory fixture: ``make_catalog(my_plugin_module)`` returns a strict Catalog."""
    return catalog_from_plugins
