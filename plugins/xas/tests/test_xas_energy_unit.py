"""An XDI file's energy column in keV (`# Column.1: energy keV`) is read in eV, and says so; an
energy column in a unit that is no energy (degrees) refuses the file with one sentence.

Before, the keV numbers were taken for eV: the NeXus file labelled 8.779 as eV and xas.normalize
failed in xraylarch's autobk ("x must be strictly increasing if s = 0"). The keV files are the
bundled real XDI files (SOURCES.md) with their energies written in keV at test time; the
reference results are those of the files as measured, in eV, computed at test time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from xas_testdata import DATA, REFERENCE_SETTINGS

from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import NormalizeParams
from asapo_pipelines_xas.readers import read_scan

#: the bundled XDI files: (file, mode xas.normalize reads it in)
FILES = [("cu_metal_rt.xdi", "transmission"), ("fe_metal_rt.xdi", "mu")]


def in_unit(source: str, unit: str, factor: float) -> str:
    """The real file with its energy column (`Column.1: energy eV`) in `unit`: each energy
    divided by `factor`."""
    out = []
    for line in (DATA / source).read_text().splitlines():
        if line.startswith("# Column.1:"):
            assert line.split()[2:] == ["energy", "eV"]
            line = f"# Column.1: energy {unit}"
        elif line.strip() and not line.startswith("#"):
            cells = line.split()
            cells[0] = f"{float(cells[0]) / factor:.7f}"
            line = " ".join(cells)
        out.append(line)
    return "\n".join(out) + "\n"


def chain(directory, mode: str, writer: bool = False) -> dict:
    units = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": str(directory), "pattern": "*.xdi"},
            "outputs": {"scans": "raw-scans"},
        },
        "normalize": {
            "unit": "xas.normalize",
            "params": {**REFERENCE_SETTINGS, "mode": mode},
            "inputs": {"scans": "raw-scans"},
            "outputs": {"spectra": "spectra"},
        },
    }
    if writer:
        units["writer"] = {
            "unit": "nexus.writer",
            "params": {"file": str(directory / "out.nxs")},
            "inputs": {"scans": "raw-scans", "spectra": "spectra"},
        }
    return units


@pytest.mark.parametrize(("source", "mode"), FILES)
def test_an_energy_column_in_kev_is_read_in_ev_and_normalised(tmp_path, run_chain, source, mode):
    name = source.replace(".xdi", "_kev.xdi")
    (tmp_path / name).write_text(in_unit(source, "keV", 1000.0))
    as_measured = read_scan(DATA / source)
    expected = normalize_scan(
        as_measured, NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": mode})
    )

    result = run_chain(chain(tmp_path, mode))
    assert result.errors == []
    (scan,) = result.values("raw-scans")
    np.testing.assert_allclose(scan["energy"], as_measured.energy, rtol=1e-12)
    # the scan says which column was converted from which unit: provenance shows it
    assert scan["metadata"]["energy_unit"] == {
        "column": "energy",
        "unit_read": "keV",
        "converted_to": "eV",
        "factor": 1000.0,
    }
    (spectrum,) = result.values("spectra")
    assert spectrum["values"]["e0"] == pytest.approx(expected.values["e0"], abs=1e-6)
    assert spectrum["values"]["edge_step"] == pytest.approx(expected.values["edge_step"])


def test_the_nexus_file_holds_the_kev_scan_in_ev(tmp_path, run_chain):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("asapo_pipelines_nexus", reason="needs the NeXus writer plugin")
    (tmp_path / "cu_kev.xdi").write_text(in_unit("cu_metal_rt.xdi", "keV", 1000.0))
    result = run_chain(chain(tmp_path, "transmission", writer=True))
    assert result.errors == []
    as_measured = read_scan(DATA / "cu_metal_rt.xdi").energy
    with h5py.File(tmp_path / "out.nxs", "r", locking=False) as f:
        scans = [e for e in f.values() if e.attrs.get("asapo_content_type") == "xas/scan"]
        (entry,) = scans
        energy = entry["data/energy"]
        assert energy.attrs["units"] in ("eV", b"eV")
        np.testing.assert_allclose(energy[()], as_measured, rtol=1e-12)
        notes = json.loads(entry["asapo/metadata"][()])
        assert notes["energy_unit"]["unit_read"] == "keV"


def test_an_energy_column_in_ev_is_read_as_it_is_and_says_nothing():
    scan = read_scan(DATA / "cu_metal_rt.xdi")
    table = np.loadtxt(DATA / "cu_metal_rt.xdi")
    np.testing.assert_array_equal(scan.energy, table[:, 0])
    assert "energy_unit" not in scan.metadata


def test_an_energy_column_in_an_unknown_unit_refuses_the_file(tmp_path, run_unit):
    (tmp_path / "cu_angle.xdi").write_text(in_unit("cu_metal_rt.xdi", "degrees", 1000.0))
    result = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    assert result.outputs == []
    (record,) = result.errors
    assert record["error"] == (
        "cannot read scan file cu_angle.xdi: its energy column energy is in 'degrees', which is "
        "not an energy unit this reader converts (it reads eV and keV)"
    )
