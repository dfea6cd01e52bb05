"""Item 2 of #12: full disks on small tmpfs mounts the tests make themselves. A storage error is
an error of the unit (it stops, one sentence), never of one message (error stream, then
acknowledged); nothing is acknowledged that is not durable; the file stays reopenable."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from faults_support import (
    pipeline,
)

from asapo_pipelines.transport import open_transport

h5py = pytest.importorskip("h5py")
nexus_writer = pytest.importorskip("asapo_pipelines_nexus.writer")

N_SPECTRA = 120
POINTS = 2000  # 5 arrays of 2000 doubles: 80 kB an entry, 9.6 MB for all: more than the disk


def spectrum(i: int) -> dict:
    energy = np.linspace(7000.0, 7600.0, POINTS)
    mu = np.tanh((energy - 7112.0) / 5.0) + i * 1e-3
    return {
        "metadata": {"file": f"scan{i:04d}.xdi", "sample": "Fe foil"},
        "values": {"e0": 7112.0, "edge_step": 1.0},
        "arrays": {
            "energy": energy.tolist(),
            "mu": mu.tolist(),
            "norm": mu.tolist(),
            "flat": mu.tolist(),
            "bkg": mu.tolist(),
        },
        "settings": {"program": "xraylarch"},
    }


def writer_pipeline(tmp_path: Path, results: Path) -> Path:
    doc = {
        "pipeline": "fulldisk",
        "transport": {"embedded": {"path": str(tmp_path / "store")}},
        "streams": {"spectra": {"external": True}},
        "units": {
            "writer": {
                "unit": "nexus.writer",
                "params": {"file": str(results)},
                "inputs": {"spectra": "spectra"},
            }
        },
    }
    path = tmp_path / "fulldisk.pipeline.yaml"
    path.write_text(json.dumps(doc))
    return path


def acknowledged(store: Path) -> set[int]:
    with sqlite3.connect(store / "spectra" / "index.db") as db:
        return {r[0] for r in db.execute("SELECT id FROM acks WHERE grp='fulldisk_writer'")}


def keys_in(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [str(g.attrs[nexus_writer.KEY_ATTR]) for g in f.values()]


def test_nexus_writer_on_a_full_disk_stops_and_loses_no_acknowledged_entry(
    tmp_path: Path, tmpfs
) -> None:
    fs = tmpfs("3m")
    results = fs.path / "results.nxs"
    file = writer_pipeline(tmp_path, results)
    from asapo_pipelines.transport.formats import encode

    with (
        open_transport({"embedded": {"path": str(tmp_path / "store")}}) as t,
        t.producer("spectra") as p,
    ):
        for i in range(N_SPECTRA):
            p.send("default", *encode(spectrum(i), "json"))
        p.finish_stream("default")

    full = pipeline("worker", str(file), "writer", cwd=tmp_path)
    err = full.stderr
    assert full.returncode == 1, err
    assert "Traceback" not in err
    assert "__dealloc__" not in err
    assert "internal error" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ")
    assert str(fs.path) in last
    assert "free space there" in last

    written = keys_in(results)  # the file opens: it was left as its last entry left it
    assert 0 < len(written) < N_SPECTRA
    # nothing acknowledged that is not in the file, and nothing sent to the error stream
    assert {f"spectra/default/{i}" for i in acknowledged(tmp_path / "store")} <= set(written)
    with open_transport({"embedded": {"path": str(tmp_path / "store")}}) as t:
        errors = t.describe().get("fulldisk.errors", [])
        assert sum(info.message_count or 0 for info in errors) == 0

    fs.grow("64m")  # the operator frees space and starts the writer again
    done = pipeline("worker", str(file), "writer", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    keys = keys_in(results)
    assert sorted(keys) == sorted(f"spectra/default/{i}" for i in range(1, N_SPECTRA + 1))
    assert acknowledged(tmp_path / "store") == set(range(1, N_SPECTRA + 1))


FILL_WITHOUT_GUARD = """
import json, sys
import numpy as np
import asapo_pipelines_nexus.writer as nexus_writer
from asapo_pipelines.sdk import UnitStorageError

# another process took the space after the check: the guard does not see it coming
nexus_writer.NexusWriter._guard_space = lambda self, nbytes: None
energy = np.linspace(7000.0, 7600.0, {points}).tolist()
writer = nexus_writer.NexusWriter(sys.argv[1]).open()
committed = []
try:
    for i in range({count}):
        body = {{"arrays": {{name: energy for name in ("energy", "mu", "norm", "flat", "bkg")}},
                "metadata": {{"file": f"scan{{i}}"}}, "values": {{}}}}
        writer.write("xas/spectrum", body, f"k{{i}}")
        committed.append(f"k{{i}}")
except UnitStorageError as exc:
    print(json.dumps({{"committed": committed, "error": str(exc)}}), flush=True)
    writer.close()
    sys.exit(1)
print(json.dumps({{"committed": committed, "error": None}}))
"""


def test_a_write_that_meets_a_full_disk_leaves_the_file_reopenable(tmp_path: Path, tmpfs) -> None:
    """Without the free-space guard (another process filled the disk after the check), HDF5
    meets ENOSPC half-way through an entry: the writer stops writing at once, the process
    exits with the failure (HDF5's own clean-up would crash after it), and on the next start
    every committed entry is there (the file salvaged when HDF5 had written part of the
    failed entry)."""
    fs = tmpfs("3m")
    path = fs.path / "results.nxs"
    script = FILL_WITHOUT_GUARD.format(points=POINTS, count=N_SPECTRA)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1, done.stderr  # its failure, not a crash (SIGSEGV is -11)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["committed"], "the disk filled before the first entry"
    assert "free space there" in result["error"]

    fs.grow("64m")
    reopened = nexus_writer.NexusWriter(path).open()
    try:
        assert set(result["committed"]) <= set(reopened._keys)
        assert reopened.write("xas/spectrum", spectrum(999), "after") is not None
    finally:
        reopened.close()
    with h5py.File(path, "r") as f:
        for group in f.values():  # every entry is whole and readable
            assert group["data/mu"].shape == (POINTS,)
