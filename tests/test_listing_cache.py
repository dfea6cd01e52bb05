"""The listing cache never shows a stale catalog: edits and new installs are seen at once."""

from __future__ import annotations

import json
import os
import time

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

PLUGIN = """
from asapo_pipelines.sdk import hookimpl

UNITS = {units!r}


@hookimpl
def register_units(register):
    for name in UNITS:
        register({{"name": name, "kind": "connector", "summary": "A source.",
                   "outputs": [{{"name": "out"}}], "runtime": "cachetest.rt:Source"}})
"""


def _names(env):
    result = run_pipeline("list-units", "--json", "--namespace", "cache", env=env)
    assert result.returncode == 0, result.stderr
    return [u["name"] for u in json.loads(result.stdout)["units"]]


def _project(tmp_path, units, version="1.0.0"):
    return PluginProject(
        "cachetest", version, {"plugin.py": PLUGIN.format(units=units)}, {"c": "cachetest.plugin"}
    ).write(tmp_path / f"src-{version}")


def test_an_edited_registration_module_is_seen(tmp_path):
    site = tmp_path / "site"
    cache = tmp_path / "cache"
    install([_project(tmp_path, ["cache.one"])], site)
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(cache)}
    assert _names(env) == ["cache.one"]
    assert _names(env) == ["cache.one"]  # second run: from the cache
    assert len(list(cache.glob("listing-*.json"))) == 1

    module = site / "cachetest" / "plugin.py"
    module.write_text(PLUGIN.format(units=["cache.one", "cache.two"]))
    future = time.time() + 5  # a new mtime even on coarse-grained file systems
    os.utime(module, (future, future))
    assert _names(env) == ["cache.one", "cache.two"]


def test_an_edit_in_a_subpackage_of_the_plugin_is_seen(tmp_path):
    """Descriptors in a subpackage (the layout `pipeline new-unit` writes): an edit there, in an
    editable install, must change the listing as an edit of the registration module does."""
    site = tmp_path / "site"
    install([_project(tmp_path, ["cache.one"])], site)
    units = site / "cachetest" / "units"
    units.mkdir()
    (units / "__init__.py").touch()
    (units / "names.py").write_text('UNITS = ["cache.one"]\n')
    module = site / "cachetest" / "plugin.py"
    module.write_text(
        PLUGIN.format(units=[]).replace("UNITS = []", "from cachetest.units.names import UNITS")
    )
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}
    assert _names(env) == ["cache.one"]
    assert _names(env) == ["cache.one"]  # from the cache

    (units / "names.py").write_text('UNITS = ["cache.one", "cache.two"]\n')
    future = time.time() + 5
    os.utime(units / "names.py", (future, future))
    assert _names(env) == ["cache.one", "cache.two"]


def test_a_package_found_by_an_editable_installs_finder_is_fingerprinted(tmp_path, monkeypatch):
    """An editable install (PEP 660) maps its package to the project's folder with a finder on
    sys.meta_path, not a path on sys.path: it is located there, and an edit changes the
    fingerprint, instead of turning the cache off for every listing."""
    import importlib.util
    import sys

    from asapo_pipelines.catalog import PluginSource
    from asapo_pipelines.listing import fingerprint

    package = tmp_path / "project" / "editable_pkg"
    (package / "units").mkdir(parents=True)
    (package / "__init__.py").touch()
    (package / "units" / "__init__.py").touch()
    (package / "units" / "one.py").write_text("X = 1\n")

    class EditableFinder:  # what setuptools' `__editable___*_finder` does, reduced
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "editable_pkg":
                return None
            return importlib.util.spec_from_file_location(
                name, package / "__init__.py", submodule_search_locations=[str(package)]
            )

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, EditableFinder()])
    source = PluginSource("editable", "editable-pkg", "1.0", "editable_pkg", None)
    first = fingerprint([source])
    assert first is not None
    assert fingerprint([source]) == first
    (package / "units" / "one.py").write_text("X = 22\n")  # another size: another fingerprint
    assert fingerprint([source]) != first


def test_a_new_plugin_and_an_upgrade_are_seen(tmp_path):
    site = tmp_path / "site"
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache")}
    assert _names(env) == []
    install([_project(tmp_path, ["cache.one"])], site)
    assert _names(env) == ["cache.one"]
    install([_project(tmp_path, ["cache.three"], version="2.0.0")], site)
    assert _names(env) == ["cache.three"]


def test_cache_can_be_turned_off_and_a_broken_cache_file_is_ignored(tmp_path):
    site = tmp_path / "site"
    cache = tmp_path / "cache"
    install([_project(tmp_path, ["cache.one"])], site)
    env = {"PYTHONPATH": str(site), "ASAPO_PIPELINES_CACHE_DIR": str(cache)}
    assert _names({**env, "ASAPO_PIPELINES_NO_CACHE": "1"}) == ["cache.one"]
    assert not cache.exists()
    assert _names(env) == ["cache.one"]
    for path in cache.glob("listing-*.json"):
        path.write_text("{not json")
    assert _names(env) == ["cache.one"]


MARKED = """
import os

# leaves a mark when imported: the test sees which processes loaded this plugin
open(os.path.join(os.environ["IMPORT_MARKS"], str(os.getpid())), "w").close()

from asapo_pipelines.sdk import hookimpl


@hookimpl
def register_units(register):
    register({"name": "cache.marked", "kind": "connector", "summary": "A source.",
              "outputs": [{"name": "out"}], "runtime": "marked.rt:Source"})
"""


def test_a_worker_loads_only_the_plugins_of_its_pipelines_units(tmp_path):
    site, marks, data = tmp_path / "site", tmp_path / "marks", tmp_path / "data"
    marks.mkdir()
    data.mkdir()
    (data / "a.txt").write_text("a\n")
    install(
        [
            PluginProject("marked", "1.0.0", {"plugin.py": MARKED}, {"m": "marked.plugin"}).write(
                tmp_path / "src"
            )
        ],
        site,
    )
    env = {
        "PYTHONPATH": str(site),
        "ASAPO_PIPELINES_CACHE_DIR": str(tmp_path / "cache"),
        "IMPORT_MARKS": str(marks),
    }
    file = tmp_path / "p.pipeline.yaml"
    file.write_text(
        json.dumps(
            {
                "pipeline": "only",
                "units": {
                    "files": {
                        "unit": "core.files",
                        "params": {"directory": str(data)},
                        "outputs": {"files": "files"},
                    },
                    "sink": {
                        "unit": "core.jsonl-sink",
                        "params": {"path": str(tmp_path / "out.jsonl")},
                        "inputs": {"messages": "files"},
                    },
                },
            }
        )
    )
    # no listing yet: the first worker loads every plugin, and writes the listing
    first = run_pipeline("worker", str(file), "files", env=env)
    assert first.returncode == 0, first.stderr
    assert len(list(marks.iterdir())) == 1
    # the next worker learns from it that only the built-in plugin provides its units
    second = run_pipeline("worker", str(file), "sink", env=env)
    assert second.returncode == 0, second.stderr
    assert len(list(marks.iterdir())) == 1
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    # a listing built afresh imports it (the mark shows the test would see an import)
    assert _names({**env, "ASAPO_PIPELINES_NO_CACHE": "1"}) == ["cache.marked"]
    assert len(list(marks.iterdir())) == 2
