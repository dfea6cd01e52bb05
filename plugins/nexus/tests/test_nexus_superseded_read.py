"""A scan file read before its writer finished (a DAQ that appends a block of lines and closes
the file, again and again: each close looks like a finished file) and read again whole. An
outside tester found the 158-point fragment stored as a raw scan titled like the scan itself,
with nothing saying it was replaced, and normalize's refusal of it proposing another element
("did you mean Eu L3?") for a label that was right. Now the refusal says the file looks
incomplete, and the fragment's entry says which entry replaced it.

The example P65 pipeline on the real P65 files: the second file's first 200 lines, then the
whole file, between two sessions of one run (a restarted source sends a file that changed as a
new version, as the watch does)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

pytest.importorskip("asapo_pipelines_xas")
xraydb = pytest.importorskip("xraydb")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
#: what the tester's DAQ had written at its first close
FIRST_LINES = 200


def test_a_fragment_read_early_is_called_incomplete_and_marked_superseded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / P65_SCANS[0], data / P65_SCANS[0])
    lines = (DATA / P65_SCANS[1]).read_text().splitlines(keepends=True)
    (data / P65_SCANS[1]).write_text("".join(lines[:FIRST_LINES]))
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    pipeline_ok(tmp_path, "run", EXAMPLE.name)
    logs = pipeline_ok(tmp_path, "logs", EXAMPLE.name, "normalize")
    said = [line for line in (logs.stdout + logs.stderr).splitlines() if P65_SCANS[1] in line]

    # the fragment as the test reads it: its points and where they end
    rows = [line.split() for line in lines[:FIRST_LINES] if line.strip() and line[0] != "#"]
    energy = np.array([float(row[0]) for row in rows])
    fe_k = xraydb.xray_edge("Fe", "K").energy
    assert energy.max() < fe_k  # the fragment ends before the edge it is labelled with
    refusal = " ".join(said)
    assert "the file looks incomplete" in refusal, refusal
    assert f"its {energy.size} points run from {energy.min():.2f} to {energy.max():.2f} eV" in (
        refusal
    )
    assert f"before the tabulated Fe K edge ({fe_k:.2f} eV)" in refusal
    assert "did you mean" not in refusal

    shutil.copy(DATA / P65_SCANS[1], data / P65_SCANS[1])  # the DAQ finished the file
    pipeline_ok(tmp_path, "run", EXAMPLE.name)  # resumes the run: the file is sent again

    with h5py.File(tmp_path / "results" / "p65.nxs", "r") as f:
        raw = {
            name: entry
            for name, entry in f.items()
            if text(entry.attrs["asapo_content_type"]) == "xas/scan"
            and P65_SCANS[1] in text(entry["title"][()])
        }
        assert len(raw) == 2, list(raw)
        sizes = {name: entry["data/energy"].shape[0] for name, entry in raw.items()}
        fragment = min(sizes, key=sizes.__getitem__)
        whole = max(sizes, key=sizes.__getitem__)
        assert sizes[fragment] == energy.size
        marked = raw[fragment]
        assert text(marked.attrs["superseded_by"]) == whole
        assert int(marked.attrs["superseded_by_version"]) == 2
        assert "not a scan to analyse" in text(marked.attrs["superseded"])
        assert text(marked["title"][()]).endswith(f"(superseded by version 2, {whole})")
        # the complete version is the scan: unmarked, titled as before
        assert "superseded_by" not in raw[whole].attrs
        assert text(raw[whole]["title"][()]).endswith(f"{P65_SCANS[1]} (version 2)")
        # the other scan, read once, is not touched
        others = [e for e in f.values() if P65_SCANS[0] in text(e["title"][()])]
        assert others
        assert not any("superseded_by" in e.attrs for e in others)
