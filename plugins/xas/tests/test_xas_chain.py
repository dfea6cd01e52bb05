"""The whole P65 chain without a transport: every hop goes through strict JSON as on the wire,
and what each step emits is what the next one (and nexus.writer, when installed) accepts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, NormalizeParams, ScanFilesParams
from asapo_pipelines_xas.readers import Scan
from asapo_pipelines_xas.scanfiles import list_scan_files, read_for_params


def wire(body: dict) -> dict:
    """What the next unit receives: strict JSON (no NaN), decoded again."""
    return json.loads(json.dumps(body, allow_nan=False))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chain")
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    files = ScanFilesParams(directory=str(tmp_path), pattern="*.xdi")
    normalize = NormalizeParams.model_validate(REFERENCE_SETTINGS)
    merger = Merger()
    scans, spectra, merges = [], [], []
    for i, path in enumerate(list_scan_files(files.directory, files.pattern)):
        scan = wire(read_for_params(path, files).to_json())
        scan["metadata"]["scan_id"] = f"raw-scans/{i + 1}"  # the provenance key a worker sets
        spectrum = wire(normalize_scan(Scan.from_json(scan), normalize).to_json())
        merged = wire(merger.add(spectrum).to_json())
        scans.append(scan)
        spectra.append(spectrum)
        merges.append(merged)
    return tmp_path, scans, spectra, merges


def test_p65_chain_from_files_to_decision(chain):
    _, scans, spectra, merges = chain
    assert [s["metadata"]["sample"] for s in scans] == ["20K_GOE_Fe_K_240"] * 2
    assert [m["n_merged"] for m in merges] == [1, 2]
    assert merges[1]["accepted"] == ["raw-scans/1", "raw-scans/2"]
    singles = [s["values"]["epsilon_k"] for s in spectra]
    target = (singles[0] + merges[1]["values"]["epsilon_k"]) / 2
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target))
    decisions = [wire(agent.decide(m)) for m in merges]
    assert [d["action"] for d in decisions] == ["more_scans", "stop"]


def test_chain_messages_are_what_the_nexus_writer_stores(chain):
    tmp_path, scans, spectra, merges = chain
    nexus = pytest.importorskip("asapo_pipelines_nexus.writer")
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "p65.nxs"
    with nexus.NexusWriter(path) as writer:
        for i, (scan, spectrum, merged) in enumerate(zip(scans, spectra, merges, strict=True)):
            writer.write("xas/scan", scan, f"raw-scans/{i + 1}")
            writer.write("xas/spectrum", spectrum, f"spectra/{i + 1}")
            writer.write("xas/merged", merged, f"merged/{i + 1}")
    with h5py.File(path, "r", swmr=True) as f:
        kinds = [f[n].attrs["asapo_content_type"] for n in sorted(f, key=lambda n: int(n[5:]))]
        assert kinds == ["xas/scan", "xas/spectrum", "xas/merged"] * 2
        assert f["entry1/definition"].asstr()[()] == "NXxas"
        assert f["entry1/sample/name"].asstr()[()] == "20K_GOE_Fe_K_240"
        np.testing.assert_array_equal(
            f["entry4/instrument/incoming_beam/data"][()], scans[1]["channels"]["i0"]
        )
        assert f["entry2/process/results/e0"][()] == pytest.approx(
            spectra[0]["values"]["e0"], abs=0.5
        )
        assert f["entry6/process/results/n_merged"][()] == 2
        settings = json.loads(f["entry2/process/parameters/data"].asstr()[()])
        assert settings["noise"]["rmax"] == 25
