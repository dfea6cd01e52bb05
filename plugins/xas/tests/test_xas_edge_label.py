"""A scan whose E0 is far from the edge it is labelled with is refused, not processed under the
wrong element: a typo in a file name or header (Cu for Fe) would otherwise put the scan in a
Cu/K group and NeXus entry, and the agent's plan would send the next scans to the Cu edge.

Run through the SDK's harness as `pipeline worker` runs the units; the reference E0 comes from
xraylarch's pre_edge and the tabulated energies from its `xray_edge`, at test time."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.normalize import compute_mu
from asapo_pipelines_xas.readers import read_scan

GOETHITE = P65_SCANS[0]
MISNAMED = GOETHITE.replace("_Fe_K_", "_Cu_K_")


def tabulated(element: str, edge: str = "K") -> float:
    from larch.xray import xray_edge

    return float(xray_edge(element, edge).energy)


def larch_e0(path, mode: str = "transmission", reference: bool = False) -> float:
    """E0 of the scan (or of its reference foil) by xraylarch's pre_edge with its defaults."""
    from larch import Group
    from larch.xafs import pre_edge

    scan = read_scan(path)
    group = Group(energy=np.asarray(scan.energy), mu=compute_mu(scan, mode))
    if reference:
        group.mu = compute_mu(scan, "reference")
    pre_edge(group)
    return float(group.e0)


def normalize_files(run_unit, unit_message, directory, files=None, **normalize):
    """xas.scan-files on the directory, its scans through xas.normalize."""
    scans = run_unit(
        "xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi", **(files or {})}
    )
    assert scans.errors == []
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    return run_unit("xas.normalize", inputs, params={**REFERENCE_SETTINGS, **normalize})


@pytest.fixture
def misnamed(tmp_path):
    """The goethite Fe K scan under a file name that says Cu K."""
    shutil.copy(DATA / GOETHITE, tmp_path / MISNAMED)
    return tmp_path


@pytest.fixture
def cu_labelled_fe(tmp_path):
    """The Cu foil with a header that says its element is Fe."""
    text = (DATA / "cu_metal_rt.xdi").read_text()
    assert "# Scan.element: Cu\n" in text
    (tmp_path / "cu_metal_rt.xdi").write_text(text.replace("Scan.element: Cu", "Scan.element: Fe"))
    return tmp_path


def the_refusal(result) -> str:
    """The one error record of a refused scan; nothing goes downstream, the scan is done."""
    assert result.values("spectra") == []
    (record,) = result.errors
    assert record["exception"].endswith("EdgeLabelError"), record["error"]
    assert len(result.acknowledged) == 1
    assert "Traceback" not in record["error"]
    return record["error"]


def test_a_file_named_for_the_wrong_element_is_refused(misnamed, run_unit, unit_message):
    e0, cu, fe = larch_e0(misnamed / MISNAMED), tabulated("Cu"), tabulated("Fe")
    error = the_refusal(normalize_files(run_unit, unit_message, misnamed))
    assert error == (
        f"{MISNAMED} is labelled Cu K (from the file name), but its E0 {e0:.2f} eV is "
        f"{abs(e0 - cu):.2f} eV from the tabulated Cu K edge ({cu:.2f} eV), beyond "
        f"max_edge_offset 50 eV: did you mean Fe K ({fe:.2f} eV)?"
    )


def test_a_refused_scan_is_not_retried(misnamed, run_unit, unit_message):
    # the scan is at fault (the SDK's BadMessage): the unit's retries would refuse it again,
    # a second apart each, for every such file
    scans = run_unit("xas.scan-files", params={"directory": str(misnamed), "pattern": "*.xdi"})
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit(
        "xas.normalize", inputs, params=REFERENCE_SETTINGS, retry={"attempts": 3, "delay": 1}
    )
    assert [record["attempts"] for record in result.errors] == [1]
    assert result.retries == 0


def test_a_header_naming_the_wrong_element_is_refused(cu_labelled_fe, run_unit, unit_message):
    e0, cu, fe = larch_e0(cu_labelled_fe / "cu_metal_rt.xdi"), tabulated("Cu"), tabulated("Fe")
    error = the_refusal(normalize_files(run_unit, unit_message, cu_labelled_fe))
    assert error.startswith(
        "cu_metal_rt.xdi is labelled Fe K (from the header's Scan.element and Scan.edge), "
        f"but its E0 {e0:.2f} eV is {abs(e0 - fe):.2f} eV from the tabulated Fe K edge "
        f"({fe:.2f} eV)"
    )
    assert error.endswith(f"did you mean Cu K ({cu:.2f} eV)?")


def test_a_wrong_element_param_is_named_as_the_source(tmp_path, run_unit, unit_message):
    shutil.copy(DATA / "cu_metal_rt.xdi", tmp_path)
    result = normalize_files(run_unit, unit_message, tmp_path, {"element": "Ni"})
    error = the_refusal(result)
    assert "labelled Ni K (element from the xas.scan-files params, edge from the header" in error
    assert f"did you mean Cu K ({tabulated('Cu'):.2f} eV)?" in error


def test_with_calibration_the_label_is_reported_once_not_the_shift(
    misnamed, run_unit, unit_message
):
    """The foil is calibrated onto the labelled edge: far beyond max_calibration_shift and
    max_edge_offset, the label is what is wrong, and that is the one sentence."""
    e0_ref = larch_e0(misnamed / MISNAMED, reference=True)
    result = normalize_files(run_unit, unit_message, misnamed, calibrate=True)
    error = the_refusal(result)
    assert f"its reference foil's E0 {e0_ref:.2f} eV is" in error
    assert "max_calibration_shift" not in error
    assert error.endswith(f"did you mean Fe K ({tabulated('Fe'):.2f} eV)?")


def test_a_correct_label_calibrates_and_passes(tmp_path, run_unit, unit_message):
    shutil.copy(DATA / GOETHITE, tmp_path)
    result = normalize_files(run_unit, unit_message, tmp_path, calibrate=True)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    assert spectrum["values"]["e0_ref"] == pytest.approx(tabulated("Fe"), abs=0.05)


@pytest.mark.parametrize("off", [0, None])
def test_max_edge_offset_0_or_null_disables_the_check(misnamed, run_unit, unit_message, off):
    result = normalize_files(run_unit, unit_message, misnamed, max_edge_offset=off)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    assert (spectrum["metadata"]["element"], spectrum["metadata"]["edge"]) == ("Cu", "K")


def test_an_unlabelled_scan_gets_its_edge_from_e0(tmp_path, run_unit, unit_message):
    """No label, nothing to contradict: E0 names the edge as before."""
    shutil.copy(DATA / GOETHITE, tmp_path / "goethite_240.00000.xdi")
    result = normalize_files(run_unit, unit_message, tmp_path)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    assert (spectrum["metadata"]["element"], spectrum["metadata"]["edge"]) == ("Fe", "K")
    assert spectrum["metadata"]["identity"]["inferred"] == ["element", "edge"]


@pytest.mark.parametrize(
    ("name", "mode", "element"),
    [
        (P65_SCANS[0], "transmission", "Fe"),
        (P65_SCANS[1], "transmission", "Fe"),
        ("cu_metal_rt.xdi", "transmission", "Cu"),
        ("fe_metal_rt.xdi", "mu", "Fe"),
    ],
)
def test_the_measured_data_lie_well_inside_the_default(
    tmp_path, run_unit, unit_message, name, mode, element
):
    """The bundled beamline scans pass, with their E0 at most half the default from the edge
    (goethite's chemical shift is the largest, about 15 eV)."""
    shutil.copy(DATA / name, tmp_path)
    assert abs(larch_e0(tmp_path / name, mode) - tabulated(element)) < 25
    result = normalize_files(run_unit, unit_message, tmp_path, mode=mode)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    assert spectrum["metadata"]["element"] == element


def test_a_scan_ending_before_its_edge_is_called_incomplete(
    tmp_path, run_unit, unit_message, caplog
):
    """A file read before its writer finished (a DAQ that closed it after its first 200
    lines): its E0, found on the pre-edge, happens to lie on Eu L3, which the refusal
    proposed for a label that was right. It says the file looks incomplete instead, and
    nothing before it asks whether the foil is in the beam (its edge is not in the file)."""
    repeat = P65_SCANS[1]  # the outside tester's file
    lines = (DATA / repeat).read_text().splitlines(keepends=True)
    (tmp_path / repeat).write_text("".join(lines[:200]))
    energy = np.asarray(read_scan(tmp_path / repeat).energy)
    fe = tabulated("Fe")
    assert energy.max() < fe
    error = the_refusal(normalize_files(run_unit, unit_message, tmp_path))
    assert error.startswith(
        f"{repeat} is labelled Fe K (from the file name), but the file looks incomplete: its "
        f"{energy.size} points run from {energy.min():.2f} to {energy.max():.2f} eV and end "
        f"before the tabulated Fe K edge ({fe:.2f} eV)"
    )
    assert "did you mean" not in error
    assert "reference channel is unusable" not in caplog.text
