"""The SDK's in-process harness fixtures (the runner `pipeline worker` uses)."""

from __future__ import annotations

from asapo_pipelines.testing.fixtures import run_unit, unit_harness, unit_message  # noqa: F401

# ends (and names) the processes a test left running: the repository's tools/, on pythonpath
pytest_plugins = ["leaked_processes"]
