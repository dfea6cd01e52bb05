"""Shared fixtures of the core test suite."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from helpers import run_pipeline


@pytest.fixture
def pipeline_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `pipeline` command: ``pipeline_cli("list-units", "--json")``."""
    return run_pipeline
