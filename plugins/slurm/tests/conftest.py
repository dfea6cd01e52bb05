"""A real one-node Slurm (munged, slurmctld, slurmd) on 127.0.0.1 for the whole session."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asapo_pipelines_slurm.testing import LocalSlurm, SlurmUnavailable

# ends (and names) the processes a test left running: the repository's tools/, on pythonpath
pytest_plugins = ["leaked_processes"]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
#: the Slurm name of the test cluster's node
NODE = "cn01"


@pytest.fixture(scope="session")
def slurm() -> Iterator[LocalSlurm]:
    # not under pytest's tmp_path: that is private to root (0700), and munged, running as the
    # munge user, must reach its socket directory
    directory = Path(tempfile.mkdtemp(prefix="asapo-slurm-"))
    # the node's Slurm name is not the machine's hostname, as on many sites (short names,
    # aliases): what a job says of its node must be Slurm's name, and a test sees the two apart
    cluster = LocalSlurm(directory, node=NODE if socket.gethostname() != NODE else f"{NODE}a")
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


@pytest.fixture
def down_partition(slurm: LocalSlurm) -> Iterator[str]:
    """A second partition of the test cluster's node, DOWN: Slurm accepts jobs for it and
    holds them (PartitionDown). Removed afterwards, so that the cluster lists `debug` alone."""
    name = "maint"
    _scontrol(slurm, "create", f"PartitionName={name}", f"Nodes={slurm.node}", "State=DOWN")
    yield name
    _remove_partition(slurm, name)


@pytest.fixture
def short_partition(slurm: LocalSlurm) -> Iterator[str]:
    """A second partition of the test cluster's node whose jobs may run for one minute at most
    (MaxTime=1): Slurm accepts a job asking for longer and holds it (PartitionTimeLimit).
    Removed afterwards, so that the cluster lists `debug` alone."""
    name = "short"
    _scontrol(slurm, "create", f"PartitionName={name}", f"Nodes={slurm.node}", "MaxTime=1")
    yield name
    _remove_partition(slurm, name)


def _remove_partition(slurm: LocalSlurm, name: str) -> None:
    subprocess.run(
        ["scancel", f"--partition={name}"], env=slurm.env, capture_output=True, timeout=30
    )
    deadline = time.monotonic() + 30
    # refused while a cancelled job of it is still completing
    while _scontrol(slurm, "delete", f"PartitionName={name}", check=False) != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"the test partition {name} could not be removed")
        time.sleep(0.5)


def _scontrol(slurm: LocalSlurm, *args: str, check: bool = True) -> int:
    done = subprocess.run(
        ["scontrol", *args], env=slurm.env, capture_output=True, text=True, timeout=30
    )
    if check and done.returncode != 0:
        raise AssertionError(f"scontrol {' '.join(args)} failed: {done.stderr.strip()}")
    return done.returncode
