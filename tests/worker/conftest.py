"""Fixtures of the worker tests: a catalog holding the sample units, and the harness fixtures."""

from __future__ import annotations

import pytest

from asapo_pipelines.testing.fixtures import run_unit, unit_harness, unit_message  # noqa: F401


@pytest.fixture(scope="session")
def sample_catalog():
    import sample_units

    from asapo_pipelines.testing import catalog_from_plugins

    return catalog_from_plugins(sample_units)
