"""One walk finds a module without importing it, for the listing cache (`module_spec`: which
files a plugin's registration comes from) and for validate (`missing_module`: P207, P109): the
two answer the same question and must agree on every layout a plugin is installed in
(a PEP 420 namespace package, an editable install's finder on sys.meta_path, a submodule that
only a meta path finder serves, a missing or misspelt submodule)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path

import pytest

from asapo_pipelines.import_strings import MissingModule, missing_module, module_spec

#: a package or module that must not be imported: it raises when it is
RAISES = "raise ImportError('imported, though only its spec was wanted')\n"


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


class EditableFinder:
    """What setuptools' `__editable___<project>_finder` does (PEP 660 editable installs),
    reduced: a top-level name maps to the project's folder, and that package's immediate
    children are found there; nothing of the project is on sys.path."""

    def __init__(self, mapping: dict[str, Path]) -> None:
        self.mapping = mapping

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname in self.mapping:
            folder = self.mapping[fullname]
            return importlib.util.spec_from_file_location(
                fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
        parent, _, _ = fullname.rpartition(".")
        if parent in self.mapping:
            return PathFinder.find_spec(fullname, [str(self.mapping[parent])])
        return None


class GeneratedFinder:
    """A meta path finder that serves one submodule of a package from a folder outside the
    package (as plugin frameworks' generated modules do): the import system imports it, so the
    walk must find it too."""

    def __init__(self, name: str, file: Path) -> None:
        self.name, self.file = name, file

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname != self.name:
            return None
        return importlib.util.spec_from_file_location(fullname, self.file)


class RaisingFinder:
    """A third-party finder that fails on every name."""

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        raise RuntimeError("a broken finder")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path and a sys.meta_path of this test's own; the modules imported
    from either are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]


def _agree(module: str) -> ModuleSpec | None:
    """`module_spec` and `missing_module` say the same; the spec, for more checks."""
    spec = module_spec(module)
    assert (spec is None) == (missing_module(module) is not None), module
    return spec


def test_a_namespace_package_spread_over_two_folders(site, tmp_path) -> None:
    other = tmp_path / "other"
    _tree(site, {"nspkg/one.py": RAISES})
    _tree(other, {"nspkg/two/__init__.py": RAISES, "nspkg/two/fit.py": RAISES})
    sys.path.append(str(other))
    try:
        assert _agree("nspkg.one").origin == str(site / "nspkg" / "one.py")
        assert _agree("nspkg.two.fit:Fit").origin == str(other / "nspkg" / "two" / "fit.py")
        assert not {"nspkg", "nspkg.one", "nspkg.two", "nspkg.two.fit"} & set(sys.modules)
        assert _agree("nspkg.tow.fit") is None
        assert missing_module("nspkg.tow.fit") == MissingModule("nspkg.tow", "nspkg.two")
    finally:
        sys.path.remove(str(other))


def test_an_editable_install_found_through_its_finder(site, tmp_path) -> None:
    project = tmp_path / "project" / "edpkg"
    # the packages' `__init__` run only when a module is missing: to confirm it (the import
    # system's own answer), as `missing_module` says
    _tree(project, {"__init__.py": "", "units/__init__.py": "", "units/one.py": RAISES})
    sys.meta_path.append(EditableFinder({"edpkg": project}))
    assert _agree("edpkg.units.one:One").origin == str(project / "units" / "one.py")
    assert _agree("edpkg").origin == str(project / "__init__.py")
    assert not {"edpkg", "edpkg.units", "edpkg.units.one"} & set(sys.modules)
    assert _agree("edpkg.units.on:One") is None
    assert missing_module("edpkg.units.on:One") == MissingModule(
        "edpkg.units.on", "edpkg.units.one"
    )
    assert "edpkg.units.one" not in sys.modules


def test_a_submodule_only_a_meta_path_finder_serves(site, tmp_path) -> None:
    _tree(site, {"hostpkg/__init__.py": RAISES})
    generated = tmp_path / "generated" / "plugin_gen.py"
    _tree(generated.parent, {"plugin_gen.py": RAISES})
    sys.meta_path.insert(0, GeneratedFinder("hostpkg.plugin_gen", generated))
    assert _agree("hostpkg.plugin_gen:Thing").origin == str(generated)
    assert "hostpkg" not in sys.modules


def test_a_missing_submodule_and_a_plain_module_without_submodules(site) -> None:
    _tree(site, {"mypkg/__init__.py": "", "mypkg/edge_jump.py": RAISES, "flat.py": ""})
    assert _agree("mypkg.edgejump:EdgeJump") is None
    assert missing_module("mypkg.edgejump") == MissingModule("mypkg.edgejump", "mypkg.edge_jump")
    assert _agree("mypkg.units.fit") is None
    assert missing_module("mypkg.units.fit") == MissingModule("mypkg.units", None)
    assert _agree("flat.inner") is None
    assert missing_module("flat.inner") == MissingModule("flat.inner", None)
    assert _agree("no_such_package_anywhere.fit") is None


def test_a_failing_finder_is_passed_over(site) -> None:
    _tree(site, {"goodpkg/__init__.py": RAISES, "goodpkg/mod.py": RAISES})
    sys.meta_path.insert(0, RaisingFinder())
    assert _agree("goodpkg.mod").origin == str(site / "goodpkg" / "mod.py")


def test_a_module_already_imported_and_a_blocked_one(site, monkeypatch) -> None:
    assert _agree("asapo_pipelines.import_strings").origin is not None
    _tree(site, {"blocked_client/__init__.py": RAISES})
    monkeypatch.setitem(sys.modules, "blocked_client", None)
    assert _agree("blocked_client") is None
