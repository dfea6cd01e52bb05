"""Two plugins claiming one unit name, as users see it: real distributions installed, the
`pipeline` command run. A plugin named like the unit's namespace keeps its unit (an outside
plugin author installed a package claiming `xas.normalize`: the P65 pipeline lost its unit,
the XAS plugin was shown broken and `validate` said "unknown unit"); a clash no plugin owns is
said as a clash, not as an unknown unit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install

from helpers import run_pipeline

PLUGIN = """
from asapo_pipelines.sdk import UnitDescriptor, hookimpl


@hookimpl
def register_units(register):
    for name in {names!r}:
        register(UnitDescriptor(name=name, kind="connector", summary="A thing.",
                                outputs=(), runtime="{pkg}.rt:Thing"))
"""

RUNTIME = """
from asapo_pipelines.sdk import Source


class Thing(Source):
    def run(self):
        pass
"""


def _project(distribution: str, version: str, plugin: str, names: list[str]) -> PluginProject:
    pkg = distribution.replace("-", "_")
    return PluginProject(
        distribution,
        version,
        {"plugin.py": PLUGIN.format(names=names, pkg=pkg), "rt.py": RUNTIME},
        {plugin: f"{pkg}.plugin"},
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ns-src")
    site = tmp_path_factory.mktemp("ns-site")
    projects = [
        _project("ns-owner", "1.0.0", "nsown", ["nsown.thing"]),
        # claims the owner's unit, and one that another plugin claims too
        _project("ns-intruder", "2.0.0", "intruder", ["nsown.thing", "shared.x"]),
        _project("ns-other", "3.0.0", "other", ["shared.x"]),
    ]
    install([p.write(root) for p in projects], site)
    return {"PYTHONPATH": str(site)}


def _pipeline(tmp_path: Path, unit: str) -> Path:
    path = tmp_path / "p.pipeline.yaml"
    path.write_text(f"pipeline: p\nunits:\n  a:\n    unit: {unit}\n")
    return path


def test_the_plugin_named_like_the_namespace_keeps_its_unit(env, tmp_path):
    result = run_pipeline("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    plugins = {p["distribution"]: p for p in json.loads(result.stdout)["plugins"]}
    assert "nsown.thing" in plugins["ns-owner"]["units"]
    assert not plugins["ns-owner"]["errors"]
    assert plugins["ns-intruder"]["errors"][0] == (
        "unit nsown.thing: the namespace nsown belongs to the plugin nsown (ns-owner 1.0.0); "
        "not loaded (name your units after your own plugin)"
    )
    checked = run_pipeline("validate", str(_pipeline(tmp_path, "nsown.thing")), env=env)
    assert "P201" not in checked.stdout + checked.stderr


def test_a_clash_no_plugin_owns_is_said_as_a_clash_not_an_unknown_unit(env, tmp_path):
    result = run_pipeline("validate", str(_pipeline(tmp_path, "shared.x")), env=env)
    assert result.returncode != 0
    assert "p.pipeline.yaml:4:11: error P201 unit shared.x is registered by both " in result.stdout
    assert "ns-intruder 2.0.0 and ns-other 3.0.0, so none of them is loaded" in result.stdout
    assert "(intruder or other) in ASAPO_PIPELINES_DISABLE_PLUGINS" in result.stdout
    assert "unknown unit" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    # and the hint works: leaving one out loads the other's
    kept = run_pipeline(
        "validate",
        str(_pipeline(tmp_path, "shared.x")),
        env={**env, "ASAPO_PIPELINES_DISABLE_PLUGINS": "intruder"},
    )
    assert "P201" not in kept.stdout, kept.stdout
