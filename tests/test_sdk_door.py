"""`asapo_pipelines.sdk` is the one import door for plugin authors: the reference unit plugins
reach the core only through it, so the core's internal modules can move without breaking a
facility's plugins, and every name they need is in the SDK's `__all__`."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the reference plugins held to the door: the unit plugins, the redis transport (its door is
#: `asapo_pipelines.sdk.transports`) and the slurm executor (`asapo_pipelines.sdk.executors`)
HELD_PLUGINS = ("xas", "nexus", "bluesky", "redis", "slurm")
#: the SDK's modules a plugin may import
DOORS = ("asapo_pipelines.sdk", "asapo_pipelines.sdk.transports", "asapo_pipelines.sdk.executors")
#: imports past the door, each with its reason
ALLOWED = {
    # `pipeline inbox` loads the pipeline file and catalog exactly as a worker does
    ("bluesky", "asapo_pipelines.worker.launch"),
}


def _core_imports(plugin: str) -> list[tuple[str, str, int]]:
    found = []
    for path in sorted((ROOT / "plugins" / plugin).glob(f"asapo_pipelines_{plugin}/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "asapo_pipelines" or name.startswith("asapo_pipelines."):
                    found.append((name, path.name, node.lineno))
    return found


@pytest.mark.parametrize("plugin", HELD_PLUGINS)
def test_reference_plugins_import_the_core_only_through_the_sdk(plugin: str) -> None:
    imports = _core_imports(plugin)
    assert imports, f"no core import found in plugins/{plugin}: the scan is broken"
    past_the_door = [
        f"{file}:{line} imports {module}"
        for module, file, line in imports
        if module not in DOORS and (plugin, module) not in ALLOWED
    ]
    assert past_the_door == []


def test_every_name_the_plugins_take_from_the_sdk_is_exported() -> None:
    missing = []
    for plugin in HELD_PLUGINS:
        for path in (ROOT / "plugins" / plugin).glob(f"asapo_pipelines_{plugin}/**/*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module in DOORS:
                    exported = importlib.import_module(node.module).__all__
                    missing += [a.name for a in node.names if a.name not in exported]
    assert missing == []


def test_the_package_root_is_no_second_door() -> None:
    # the root holds the entry-point group, the distribution name and the version only; what
    # a plugin author needs is in the SDK, and the docs' example plugin takes it from there
    import asapo_pipelines

    assert sorted(asapo_pipelines.__all__) == ["CORE_DISTRIBUTION", "PROJECT", "__version__"]
    with pytest.raises(AttributeError):
        _ = asapo_pipelines.hookimpl  # type: ignore[attr-defined]
    example = ROOT / "docs" / "examples" / "minimal-plugin" / "acme_xrd"
    modules = {
        node.module
        for path in example.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
        if node.module.startswith("asapo_pipelines")
    }
    assert modules == {"asapo_pipelines.sdk"}
