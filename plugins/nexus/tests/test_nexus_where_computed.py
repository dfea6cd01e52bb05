"""Each entry's provenance names where its result was computed: the host (`provenance/host`)
and the executor's job (`provenance/job`, an NXnote) of the worker that made it. Real
`pipeline run` of scan files -> NeXus writer, run inside a Slurm job's environment (the local
executor's workers inherit it) and outside one.

Before: the provenance named the unit, its version, params and run, but neither the host nor
the Slurm job: one bad entry among a night's could not be matched to a node or a job's log."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import h5py
import pytest
from nexus_cli import PIPELINE_BIN, pipeline_env, text
from nexus_testdata import DATA, P65_SCANS, SCANS_TO_WRITER

pytest.importorskip("asapo_pipelines_xas")

PIPELINE_FILE = SCANS_TO_WRITER.format(name="nexus-where")


def _run(work: Path, env: dict[str, str]) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """`pipeline run` with `env` added: (host, job) of each entry, and the scans worker's pid."""
    (work / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, work / "data" / name)
    (work / "p.pipeline.yaml").write_text(PIPELINE_FILE)
    done = subprocess.run(
        [PIPELINE_BIN, "run", "p.pipeline.yaml"],
        cwd=work,
        env={**pipeline_env(work), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    pid = re.search(r"^scans\[0\] started, pid (\d+)$", said, re.MULTILINE)
    assert pid, said
    with h5py.File(work / "results" / "scans.nxs", "r", locking=False) as f:
        found = [
            (text(e["provenance/host"][()]), json.loads(e["provenance/job/data"][()]))
            for e in f.values()
        ]
    assert len(found) == len(P65_SCANS), said
    return found, int(pid[1])


def test_entries_of_a_run_inside_a_slurm_job_name_its_job_and_node(tmp_path: Path) -> None:
    found, scans = _run(tmp_path, {"SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "node-7"})
    for host, job in found:
        assert host == socket.gethostname()
        assert job == {"executor": "slurm", "id": "4242", "node": "node-7", "pid": scans}


def test_entries_of_a_local_run_name_the_host_and_the_workers_pid(tmp_path: Path) -> None:
    # (empty: as unset, should the tests themselves run inside a Slurm job)
    found, scans = _run(tmp_path, {"SLURM_JOB_ID": ""})
    assert found == [(socket.gethostname(), {"executor": "local", "pid": scans})] * len(P65_SCANS)
