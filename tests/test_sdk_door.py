"""`asapo_pipelines.sdk` is the one import door for plugin authors: the reference unit plugins
reach the core only through it, so the core's internal modules can move without breaking a
facility's plugins, and every name they need is in the SDK's `__all__`."""

from __future__ import annotations

import ast
import importlib
import re
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


#: the pages a plugin author writes from: what they show to import must be the doors
AUTHOR_PAGES = ("plugins.md", "hooks.md", "unit-authors.md", "executors.md", "transports.md")
#: where transports.md starts speaking to transport authors (before: users of the transports)
AUTHOR_PART = {"transports.md": "## Adding a transport"}
#: core modules a page may name past the doors, each with its reason
NAMED_ON_PAGES = {
    # the hooks page's opening (the hookspecs module's docstring) says how the core calls hooks
    ("hooks.md", "asapo_pipelines.plugin_manager"),
}
IMPORT = re.compile(
    r"^\s*(?:from\s+(asapo_pipelines[\w.]*)\s+import\s+(.+)|import\s+(asapo_pipelines[\w.]*))"
)
NAMED = re.compile(r"\b(asapo_pipelines(?:\.\w+)+)")
INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$', re.M)


def _author_text(page: str) -> str:
    """The part of `page` written for plugin authors, with the files it includes."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    if page in AUTHOR_PART:
        text = text[text.index(AUTHOR_PART[page]) :]
    return INCLUDE.sub(lambda m: (ROOT / m.group(1)).read_text(encoding="utf-8"), text)


def _through_a_door(module: str) -> bool:
    return module in DOORS or module.startswith("asapo_pipelines.testing")


@pytest.mark.parametrize("page", AUTHOR_PAGES)
def test_the_plugin_author_pages_import_only_through_the_doors(page: str) -> None:
    # a snippet importing `asapo_pipelines.transport` works today and breaks a facility's
    # plugin when the core's modules move; every name a snippet takes from a door is exported
    text = _author_text(page)
    past, missing = [], []
    for line in text.splitlines():
        match = IMPORT.match(line)
        if not match:
            continue
        module = match.group(1) or match.group(3)
        if not _through_a_door(module):
            past.append(line.strip())
        elif match.group(2) and module in DOORS:
            names = [n.split(" as ")[0].strip(" ()") for n in match.group(2).split(",")]
            exported = importlib.import_module(module).__all__
            missing += [f"{module}.{n}" for n in names if n and n not in exported]
    assert past == []
    assert missing == []
    named = {
        name
        for name in NAMED.findall(text)
        if not name.startswith("asapo_pipelines.sdk") and not _through_a_door(name)
    }
    assert sorted(n for n in named if (page, n) not in NAMED_ON_PAGES) == []


def test_the_executor_example_imports_only_through_the_doors() -> None:
    example = ROOT / "docs" / "examples" / "executor-plugin" / "acme_procs"
    modules = {
        node.module
        for path in example.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
        if node.module.startswith("asapo_pipelines")
    }
    assert modules == {"asapo_pipelines.sdk", "asapo_pipelines.sdk.executors"}


def test_the_door_shows_only_its_names() -> None:
    """`dir(asapo_pipelines.sdk)` is what an editor completes: `annotations`, a leftover of
    `from __future__ import annotations`, is no name a plugin author should find there."""
    sdk = importlib.import_module("asapo_pipelines.sdk")
    leftovers = [name for name in dir(sdk) if not name.startswith("_")]
    assert "annotations" not in leftovers
    assert set(sdk.__all__) <= set(leftovers)
