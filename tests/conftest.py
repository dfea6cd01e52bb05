"""Shared fixtures of the core test suite."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from helpers import CACHE_DIR, run_pipeline

# ends (and names) the processes a test left running: the repository's tools/, on pythonpath
pytest_plugins = ["leaked_processes"]


@pytest.fixture(scope="session", autouse=True)
def _listing_cache_removed() -> Iterator[None]:
    """The listing cache of the commands the tests run (`helpers.CACHE_DIR`, one per test
    process) is removed at the end: each run of the suite left one in the temporary
    directory."""
    yield
    shutil.rmtree(CACHE_DIR, ignore_errors=True)


@pytest.fixture
def pipeline_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `pipeline` command: ``pipeline_cli("list-units", "--json")``."""
    return run_pipeline
