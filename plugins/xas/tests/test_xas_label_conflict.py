"""A file whose header and name disagree on the element: an outside tester saved the Cu foil
under the goethite series' name (`20K_GOE_Fe_K_240.00002.xdi`). The header's label wins, as
documented, and the scan became a Cu group without a word anywhere, while the NeXus metadata
held element Cu beside element_from_name Fe. Now the source warns, its summary and
normalize's list the file, and the scan's metadata carries `label_conflict` for the units
downstream. The example P65 pipeline, on the real files, through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from xas_procs import pipeline_command
from xas_testdata import DATA, P65_SCANS

# the P65 example writes its NeXus file, whose metadata this reads: with the NeXus plugin
# only (nox's "all" session); the XAS plugin's own session has no nexus.writer
pytest.importorskip("asapo_pipelines_nexus")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
MISNAMED = "20K_GOE_Fe_K_240.00002.xdi"


def _header(path: Path, key: str) -> str:
    """An XDI header field's value as the file writes it."""
    for line in path.read_text().splitlines():
        if line.lower().startswith(f"# {key.lower()}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no {key}")


def test_a_header_contradicting_the_file_name_is_warned_of(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, data / name)
    foil = DATA / "cu_metal_rt.xdi"
    shutil.copy(foil, data / MISNAMED)
    header = f"{_header(foil, 'Scan.element')} {_header(foil, 'Scan.edge')}"
    assert header == "Cu K"  # the foil's header, which the name (Fe K) contradicts
    pipeline = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, pipeline)
    done = pipeline_command(pipeline, "run")
    assert done.returncode == 0, done.stdout + done.stderr

    logs = pipeline_command(pipeline, "logs", "scans")
    warned = [
        line
        for line in (logs.stdout + logs.stderr).splitlines()
        if "WARNING" in line and MISNAMED in line
    ]
    assert len(warned) == 1, logs.stdout + logs.stderr
    assert f"its header says {header} but its file name says Fe K" in warned[0]
    # the goethite scans, whose header names no element, are not warned of
    assert not any(name in logs.stdout + logs.stderr for name in P65_SCANS)

    status = pipeline_command(pipeline, "status", "--json")
    units = {u["task"]: u.get("summary") or {} for u in json.loads(status.stdout)["units"]}
    assert units["scans"]["label_conflicts"] == [
        {"file": MISNAMED, "header": header, "file_name": "Fe K"}
    ]
    listed = {r["file"]: r for r in units["normalize"]["scans"]}
    assert listed[MISNAMED]["label_conflict"] == f"header {header}, file name Fe K"
    assert not any("label_conflict" in listed[name] for name in P65_SCANS)

    # the scan's record, which the merge and the agent read, carries it
    with h5py.File(tmp_path / "results" / "p65.nxs", "r") as f:
        metas = [
            json.loads(entry["asapo/metadata"][()])
            for entry in f.values()
            if entry["asapo/metadata"].shape == () and MISNAMED in str(entry["title"][()])
        ]
    scans = [m for m in metas if m.get("file") == MISNAMED]
    assert scans, metas
    for meta in scans:
        assert meta["label_conflict"] == {"header": header, "file_name": "Fe K"}
