"""Shared fixtures: the bundled beamline data and the reference settings of its known values."""

from __future__ import annotations

from pathlib import Path

import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

# the SDK's in-process harness (the runner `pipeline worker` uses)
from asapo_pipelines.testing.fixtures import run_unit, unit_harness, unit_message  # noqa: F401

# ends (and names) the processes a test left running: the repository's tools/, on pythonpath
pytest_plugins = ["leaked_processes"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def reference_params():
    from asapo_pipelines_xas.params import NormalizeParams

    return NormalizeParams.model_validate(REFERENCE_SETTINGS)


@pytest.fixture(scope="session")
def p65_scans():
    from asapo_pipelines_xas.readers import read_scan

    return [read_scan(DATA / name) for name in P65_SCANS]


@pytest.fixture(scope="session")
def p65_spectra(p65_scans, reference_params):
    from asapo_pipelines_xas.normalize import normalize_scan

    return [normalize_scan(scan, reference_params) for scan in p65_scans]


@pytest.fixture(scope="session")
def merges(tmp_path_factory):
    """The merge the plugin sends after each of three repeats of the P65 scans (their counts
    changed by 0.02 %: other measurements), in order."""
    from xas_agent_procs import merges_of, noisy_copy

    directory = tmp_path_factory.mktemp("repeats")
    return merges_of([noisy_copy(directory, i, 2e-4) for i in range(3)])
