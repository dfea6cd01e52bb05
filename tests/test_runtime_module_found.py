"""`missing_module`: whether a runtime's module is installed, found the way the import system
would find it but without running any module's code while it is there (P207 of validate)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from asapo_pipelines.import_strings import MissingModule, missing_module

#: a package or module that must not be imported: it raises when it is
RAISES = "raise ImportError('imported, though only its spec was wanted')\n"
#: an old-style namespace package: its `__path__` grows while it is imported
EXTENDS_PATH = "from pkgutil import extend_path\n__path__ = extend_path(__path__, __name__)\n"


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path; the modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_module_in_a_package_that_raises_is_found_without_importing_either(site) -> None:
    _tree(
        site,
        {
            "heavypkg/__init__.py": RAISES,
            "heavypkg/sub/__init__.py": RAISES,
            "heavypkg/sub/fit.py": RAISES,
        },
    )
    assert missing_module("heavypkg.sub.fit:Fit") is None
    assert not {"heavypkg", "heavypkg.sub", "heavypkg.sub.fit"} & set(sys.modules)


def test_a_misspelt_module_is_named_with_the_module_of_the_closest_name(site) -> None:
    _tree(site, {"myxas/__init__.py": "", "myxas/edge_jump.py": RAISES})
    assert missing_module("myxas.edgejump:EdgeJump") == MissingModule(
        "myxas.edgejump", "myxas.edge_jump"
    )


def test_the_first_missing_part_is_named(site) -> None:
    _tree(site, {"myxas/__init__.py": ""})
    assert missing_module("myxas.units.fit:Fit") == MissingModule("myxas.units", None)
    # no guess among every installed top-level package
    assert missing_module("no_such_package_anywhere.fit:Fit") == MissingModule(
        "no_such_package_anywhere", None
    )


def test_a_plain_module_has_no_submodules(site) -> None:
    _tree(site, {"flat.py": ""})
    assert missing_module("flat.inner:Thing") == MissingModule("flat.inner", None)


def test_a_package_that_extends_its_path_on_import_is_not_refused(site) -> None:
    """`pkgutil.extend_path` adds the package's other portions only when it runs: no spec shows
    them, so the walk misses `ns_portions.second`; the parents are then imported to confirm."""
    _tree(
        site,
        {
            "first/ns_portions/__init__.py": EXTENDS_PATH,
            "second/ns_portions/__init__.py": EXTENDS_PATH,
            "second/ns_portions/second.py": RAISES,
        },
    )
    sys.path[:0] = [str(site / "first"), str(site / "second")]
    try:
        assert missing_module("ns_portions.second:Thing") is None
        assert "ns_portions.second" not in sys.modules
    finally:
        del sys.path[:2]


def test_a_module_already_imported_is_there() -> None:
    assert missing_module("asapo_pipelines.import_strings:missing_module") is None


def test_a_parent_package_that_exits_while_confirming_does_not_end_the_check(site) -> None:
    """The confirmation imports the parents; one calling sys.exit() must not end `validate`
    (its worker reports it, in one sentence)."""
    _tree(site, {"exiting/__init__.py": "import sys\nsys.exit(3)\n"})
    assert missing_module("exiting.gone:Thing") is None


def test_a_module_the_import_system_blocks_is_missing(site, monkeypatch) -> None:
    """`sys.modules[name] = None` makes `import name` refuse it (the import system's own mark),
    even when it is on sys.path: the check says what the import would do."""
    _tree(site, {"blocked_client/__init__.py": RAISES})
    monkeypatch.setitem(sys.modules, "blocked_client", None)
    assert missing_module("blocked_client") == MissingModule("blocked_client", None)
