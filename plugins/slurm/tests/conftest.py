"""A real one-node Slurm (munged, slurmctld, slurmd) on 127.0.0.1 for the whole session."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from asapo_pipelines_slurm.testing import LocalSlurm, SlurmUnavailable

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    # not under pytest's tmp_path: that is private to root (0700), and munged, running as the
    # munge user, must reach its socket directory
    directory = Path(tempfile.mkdtemp(prefix="asapo-slurm-"))
    cluster = LocalSlurm(directory)
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"no local Slurm cluster: {exc}")
    previous = os.environ.get("SLURM_CONF")
    # every Slurm command of the executor (and of the `pipeline` commands the tests run)
    # finds this cluster through SLURM_CONF
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _stop_deployments() -> Iterator[None]:
    """Stop what a test deployed, also when it failed half-way: its watcher (by pid) and its
    jobs (scancel)."""
    from slurm_support import MADE

    yield
    while MADE:
        made = MADE.pop()
        with contextlib.suppress(Exception):
            if made.layout.state.exists():
                made.stop()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder every job can read (jobs run as root here, but keep it like a shared disk)."""
    path = Path(tempfile.mkdtemp(prefix="asapo-slurm-work-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pipeline_bin() -> str:
    return str(Path(sys.executable).with_name("pipeline"))
