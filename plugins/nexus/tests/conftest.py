"""The SDK's in-process harness fixtures (the runner `pipeline worker` uses)."""

from __future__ import annotations

from asapo_pipelines.testing.fixtures import run_unit, unit_harness, unit_message  # noqa: F401
