"""What docs/plugins.md promises of a bad descriptor in a plugin's hook: a bad mapping is reported
and hides none of the plugin's other units; a `UnitDescriptor(...)` that raises ends the hook,
keeping the units registered before it, and the plugin is shown broken with the reason."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from asapo_pipelines.descriptor import Port
from asapo_pipelines.sdk import UnitDescriptor, hookimpl
from asapo_pipelines.testing import catalog_from_plugins


def _fields(name: str, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": name,
        "kind": "connector",
        "summary": "A source.",
        "runtime": "acme_iso.units:Source",
        "outputs": (Port(name="out"),),
    }
    return {**fields, **extra}


def _plugin(build: Any) -> SimpleNamespace:
    @hookimpl
    def register_units(register: Any) -> None:
        register(build(**_fields("acme-iso.first")))
        register(build(**_fields("acme-iso.typo", content_type="bad")))
        register(build(**_fields("acme-iso.last")))

    return SimpleNamespace(register_units=register_units)


def _ours(catalog: Any) -> list[str]:
    return sorted(name for name in catalog.units if name.startswith("acme-iso."))


def test_a_bad_mapping_hides_none_of_the_plugins_other_units() -> None:
    catalog = catalog_from_plugins(_plugin(dict), strict=False)
    assert _ours(catalog) == ["acme-iso.first", "acme-iso.last"]
    (record,) = catalog.broken
    (error,) = record.errors
    assert "acme-iso.typo" in error
    assert "content_type" in error


def test_a_raising_constructor_ends_the_hook_and_keeps_what_came_before() -> None:
    catalog = catalog_from_plugins(_plugin(UnitDescriptor), strict=False)
    assert _ours(catalog) == ["acme-iso.first"]
    (record,) = catalog.broken
    (error,) = record.errors
    assert "content_type" in error
