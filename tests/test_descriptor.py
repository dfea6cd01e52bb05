"""Unit descriptors and the catalog built in-process with the `make_catalog` fixture."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import ValidationError

from asapo_pipelines.errors import PluginError, UnknownUnitError
from asapo_pipelines.sdk import Params, Port, UnitDescriptor, hookimpl


def _unit(**changes):
    fields = {
        "name": "demo.echo",
        "kind": "processor",
        "summary": "Echoes.",
        "inputs": (Port(name="input"),),
        "outputs": (Port(name="output"),),
        "runtime": "demo.rt:Echo",
    }
    fields.update(changes)
    return UnitDescriptor(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "echo"}, "String should match pattern"),
        ({"name": "Demo.Echo"}, "String should match pattern"),
        ({"kind": "robot"}, "Input should be 'connector', 'processor' or 'agent'"),
        ({"runtime": "demo.rt.Echo"}, "String should match pattern"),
        ({"inputs": ()}, "a processor needs at least one input port"),
        ({"inputs": (Port(name="a"), Port(name="a"))}, "input port 'a' is declared twice"),
        ({"kind": "connector"}, "either a source (outputs only) or a sink (inputs only)"),
        ({"params": dict}, "params must be a pydantic model class, not type"),
        ({"summary": "two\nlines"}, "summary must be one line"),
        ({"status": "gold"}, "Input should be 'stable', 'beta', 'experimental' or 'deprecated'"),
    ],
)
def test_invalid_descriptors_are_rejected_with_the_reason(changes, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _unit(**changes)


def test_port_content_types_are_media_type_like():
    assert Port(name="x", content_type="xas/scan").content_type == "xas/scan"
    assert Port(name="x", content_type="image/*").content_type == "image/*"
    with pytest.raises(ValidationError):
        Port(name="x", content_type="scan")


def test_roles_follow_kind_and_ports():
    assert _unit().role == "processor"
    assert _unit(kind="connector", inputs=()).role == "source"
    assert _unit(kind="connector", outputs=()).role == "sink"
    assert _unit().namespace == "demo"


def test_runtime_is_loaded_only_on_request(monkeypatch):
    module = types.ModuleType("demo_runtime_mod")

    class Echo:
        pass

    module.Echo = Echo
    monkeypatch.setitem(sys.modules, "demo_runtime_mod", module)
    assert _unit(runtime="demo_runtime_mod:Echo").load_runtime() is Echo


def _plugin(*descriptors):
    module = types.ModuleType("demo_plugin")

    @hookimpl
    def register_units(register):
        for d in descriptors:
            register(d)

    module.register_units = register_units
    return module


def test_make_catalog_builds_a_strict_catalog_from_modules(make_catalog):
    class EchoParams(Params):
        times: int = 1

    catalog = make_catalog(_plugin(_unit(params=EchoParams)))
    unit = catalog.get("demo.echo")
    assert unit.distribution == "test-plugins"
    assert unit.params_schema()["properties"]["times"]["default"] == 1
    assert "core.identity" in catalog  # the built-in plugin registers through the same hook


def test_make_catalog_is_strict_about_broken_plugins(make_catalog):
    with pytest.raises(PluginError, match="registered a str, not a UnitDescriptor"):
        make_catalog(_plugin("not a descriptor"))
    catalog = make_catalog(_plugin("not a descriptor"), strict=False)
    (broken,) = catalog.broken
    assert broken.errors == ["invalid descriptor: registered a str, not a UnitDescriptor"]


def test_a_hook_that_raises_is_reported_not_propagated(make_catalog):
    module = types.ModuleType("raising_plugin")

    @hookimpl
    def register_units(register):
        raise KeyError("missing config")

    module.register_units = register_units
    catalog = make_catalog(module, strict=False)
    assert catalog.broken[0].errors == ["register_units raised KeyError: 'missing config'"]
    assert "core.files" in catalog


def test_same_distribution_registering_twice_is_named(make_catalog):
    catalog = make_catalog(_plugin(_unit(), _unit()), strict=False)
    assert "demo.echo" not in catalog
    assert catalog.broken[0].errors == [
        "unit demo.echo is registered more than once by test-plugins"
    ]


def test_unknown_unit_error_suggests(make_catalog):
    catalog = make_catalog()
    with pytest.raises(UnknownUnitError, match=r"did you mean core\.identity\?"):
        catalog.get("core.identty")


def test_builtin_params_reject_unknown_keys(make_catalog):
    files = make_catalog().get("core.files")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        files.params.model_validate({"directory": "/data", "patern": "*.h5"})
