"""Fixtures of the pipeline file tests: a catalog with the pretend beamline units, in-process
and installed as a real plugin distribution for the `pipeline` command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from asapo_pipelines.testing import catalog_from_plugins
from asapo_pipelines.testing.distributions import PluginProject, install

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import fake_units  # noqa: E402


@pytest.fixture(scope="session")
def catalog():
    """Built-in units plus the pretend beamline units (xas.*, nexus.writer, img.detector)."""
    return catalog_from_plugins(fake_units, distribution="fake-beamline", version="1.0.0")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory with the pretend beamline units pip-installed as `fake-beamline`."""
    src = tmp_path_factory.mktemp("fake-beamline-src")
    target = tmp_path_factory.mktemp("fake-beamline-site")
    project = PluginProject(
        "fake-beamline",
        "1.0.0",
        modules={"plugin.py": (HERE / "fake_units.py").read_text()},
        entry_points={"fake": "fake_beamline.plugin"},
    )
    install([project.write(src)], target)
    return target


@pytest.fixture
def plugin_env(plugin_site: Path) -> dict[str, str]:
    # only this plugin (and the built-in one): the real xas plugin, when installed, registers
    # units of the same names
    return {"PYTHONPATH": str(plugin_site), "ASAPO_PIPELINES_PLUGINS": "fake-beamline"}


@pytest.fixture
def core_env() -> dict[str, str]:
    """Only the built-in units, whatever else is installed."""
    # the built-in plugin only: its name, not a name of no plugin, which `validate` warns of
    return {"ASAPO_PIPELINES_PLUGINS": "core"}
