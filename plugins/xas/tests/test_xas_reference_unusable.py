"""The sample's mu never depends on the reference channel: a transmission scan whose Iref is dead
(all zeros), or switched off (`columns: {iref: null}`), is normalised and merged without its foil,
with a warning saying so; a few isolated Iref dropouts are dropped from the foil's spectrum only.
Only `calibrate: true`, which needs the foil, refuses such a scan, in one sentence.

An outside tester's dead Iref made the whole scan unusable ("ln(it/iref) needs positive counts,
but 1942 points are zero..."), even with `calibrate: false` and `align: none`, while its
ln(I0/It) was perfect, and `columns: {iref: null}` failed validation.

Real P65 goethite scans (SOURCES.md) with Iref written 0; E0s by xraylarch at test time, from
the files' columns read with numpy (not by the plugin's reader)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from xas_procs import pipeline_command, read, scan_chain, write_pipeline
from xas_testdata import (
    DATA,
    P65_ENERGY,
    P65_I0,
    P65_IREF,
    P65_IT,
    P65_SCANS,
    REFERENCE_SETTINGS,
    larch_e0,
    p65_variant,
)

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
#: three isolated dropouts of the Iref counter (rows of the file, which is sorted by energy)
DROPOUTS = [100, 500, 1500]


def columns(path) -> np.ndarray:
    return np.loadtxt(path, comments="#")


def sample_e0(path) -> float:
    """xraylarch's E0 of the file's ln(I0/It)."""
    table = columns(path)
    return larch_e0(table[:, P65_ENERGY], np.log(table[:, P65_I0] / table[:, P65_IT]))


def larch_merge_e0(paths) -> float:
    """E0 of xraylarch's merge (`merge_groups`, cubic) of the files' ln(I0/It), unshifted."""
    from larch import Group
    from larch.io import merge_groups
    from larch.xafs import pre_edge

    groups = []
    for path in paths:
        table = columns(path)
        groups.append(
            Group(energy=table[:, P65_ENERGY], mu=np.log(table[:, P65_I0] / table[:, P65_IT]))
        )
    merged = merge_groups(groups, xarray="energy", yarray="mu", kind="cubic", trim=True)
    pre_edge(merged)
    return float(merged.e0)


def dead_iref(tmp_path, name: str = "goe_Fe_K_240.00000.xdi", source: str = P65_SCANS[0]):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return p65_variant(source, data / name, seed=0, noise=0.0, zero_iref=slice(None))


def spectra_of(tmp_path) -> dict[str, dict]:
    return {v["metadata"]["file"]: v for _, v in read(tmp_path / "store", "spectra")}


@pytest.mark.parametrize("merge", [{}, {"align": "none"}], ids=["align-reference", "align-none"])
def test_a_dead_reference_channel_leaves_the_transmission_scan_usable(tmp_path, merge):
    path = dead_iref(tmp_path)
    pipeline = write_pipeline(tmp_path, "dead-iref", scan_chain("data", NORMALIZE, merge))
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    said = " ".join(run.stdout.split())  # the run's output wraps long lines
    assert (
        "normalize[0] WARNING goe_Fe_K_240.00000.xdi: the reference channel is unusable (Iref "
        "is zero, negative or missing at all 1942 points): this scan is normalised without its "
        "foil" in said
    )
    # warned once per file; and the run's summary says it beside the file
    assert said.count("WARNING goe_Fe_K_240.00000.xdi: the reference channel is unusable") == 1
    assert (
        "reference the reference channel is unusable (Iref is zero, negative or missing at all "
        "1942 points) merge:"
    ) in said, said
    assert "refused" not in said
    spectrum = spectra_of(tmp_path)[path.name]
    assert spectrum["values"]["e0"] == pytest.approx(sample_e0(path), abs=0.01)
    assert spectrum["values"]["e0_ref"] is None
    assert "mu_ref" not in spectrum["arrays"]
    assert spectrum["metadata"]["reference"].startswith("the reference channel is unusable")
    assert "neither calibrated nor aligned on a foil" in spectrum["metadata"]["reference"]
    (merged,) = [v for _, v in read(tmp_path / "store", "merged")]
    assert (merged["n_scans"], merged["n_merged"]) == (1, 1)


def test_a_scan_without_its_foil_is_merged_with_one_that_has_it(tmp_path):
    """The merge takes the scan without a foil on its energies as measured (never the anchor,
    never shifted): the merge of both is xraylarch's of the two as measured."""
    dead = dead_iref(tmp_path, "goe_Fe_K_240.00001.xdi", P65_SCANS[1])
    good = p65_variant(P65_SCANS[0], tmp_path / "data" / "goe_Fe_K_240.00000.xdi", seed=0, noise=0)
    pipeline = write_pipeline(tmp_path, "mixed", scan_chain("data", NORMALIZE, {}))
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    last = [v for _, v in read(tmp_path / "store", "merged")][-1]
    assert (last["n_scans"], last["n_merged"], last["rejected"]) == (2, 2, [])
    (without,) = [s for s in last["scans"] if s["scan"].endswith(dead.name)]
    assert (without["shift"], without["shift_err"]) == (0.0, None)  # not aligned: no foil
    assert last["values"]["e0"] == pytest.approx(larch_merge_e0([good, dead]), abs=0.3)


def test_a_few_dropouts_are_dropped_from_the_foil_only(tmp_path, run_unit, unit_message):
    path = p65_variant(
        P65_SCANS[0], tmp_path / "goe_Fe_K_240.00000.xdi", seed=0, noise=0, zero_iref=DROPOUTS
    )
    table = columns(path)
    keep = np.ones(len(table), bool)
    keep[DROPOUTS] = False
    foil_e0 = larch_e0(table[keep, P65_ENERGY], np.log(table[keep, P65_IT] / table[keep, P65_IREF]))
    scans = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit("xas.normalize", inputs, params=NORMALIZE)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    assert spectrum["values"]["e0"] == pytest.approx(sample_e0(path), abs=0.01)
    assert spectrum["values"]["e0_ref"] == pytest.approx(foil_e0, abs=0.01)
    mu_ref = np.asarray(spectrum["arrays"]["mu_ref"], dtype=float)
    assert np.all(np.isfinite(mu_ref))  # on every energy, for the merge's alignment
    np.testing.assert_allclose(
        mu_ref[keep], np.log(table[keep, P65_IT] / table[keep, P65_IREF]), rtol=1e-12
    )
    energies = ", ".join(f"{e:.2f}" for e in table[DROPOUTS, P65_ENERGY])
    assert spectrum["metadata"]["reference"] == (
        "3 points of the reference foil dropped, where It or Iref hold no count (at "
        f"{energies} eV, as measured): its E0 is found without them, and mu_ref is "
        "interpolated there"
    )
    # and the foil still calibrates the scan
    calibrated = run_unit("xas.normalize", inputs, params={**NORMALIZE, "calibrate": True})
    assert calibrated.errors == []
    (done,) = calibrated.values("spectra")
    from xraydb import xray_edge

    assert done["values"]["energy_shift"] == pytest.approx(
        xray_edge("Fe", "K").energy - foil_e0, abs=0.01
    )


def test_a_stretch_of_zeros_makes_the_foil_unusable(tmp_path, run_unit, unit_message):
    """Ten zeros in a row at the foil's edge are no dropouts: the edge would be drawn through
    the gap. The scan is normalised without its foil."""
    table = columns(DATA / P65_SCANS[0])
    edge = int(np.argmin(abs(table[:, P65_ENERGY] - 7112.0)))
    path = p65_variant(
        P65_SCANS[0],
        tmp_path / "goe_Fe_K_240.00000.xdi",
        seed=0,
        noise=0,
        zero_iref=slice(edge, edge + 10),
    )
    scans = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit("xas.normalize", inputs, params=NORMALIZE)
    assert result.errors == []
    (spectrum,) = result.values("spectra")
    assert spectrum["values"]["e0"] == pytest.approx(sample_e0(path), abs=0.01)
    assert spectrum["values"]["e0_ref"] is None
    assert spectrum["metadata"]["reference"].startswith(
        "the reference channel is unusable (Iref is zero, negative or missing at 10 of 1942 "
        f"points, 10 of them in a row from {table[edge, P65_ENERGY]:.2f} eV, more than the 2 in "
        "a row that may be dropped)"
    )


def test_calibrate_with_a_dead_foil_refuses_the_scan_in_one_sentence(
    tmp_path, run_unit, unit_message
):
    dead_iref(tmp_path)
    scans = run_unit("xas.scan-files", params={"directory": str(tmp_path / "data")})
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit("xas.normalize", inputs, params={**NORMALIZE, "calibrate": True})
    assert result.values("spectra") == []
    (record,) = result.errors
    assert record["error"] == (
        "goe_Fe_K_240.00000.xdi: calibrate needs the reference foil, but its channel is "
        "unusable (Iref is zero, negative or missing at all 1942 points), so this scan cannot "
        "be calibrated: set `calibrate: false` to normalise it on its energies as measured"
    )


def test_iref_null_switches_the_reference_channel_off(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = p65_variant(P65_SCANS[0], data / "goe_Fe_K_240.00000.xdi", seed=0, noise=0)
    units = scan_chain("data", NORMALIZE, {}, columns={"iref": None})
    pipeline = write_pipeline(tmp_path, "no-iref", units)
    check = pipeline_command(pipeline, "validate")
    assert check.returncode == 0, check.stdout + check.stderr
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stdout + run.stderr  # asked for: nothing to warn of
    spectrum = spectra_of(tmp_path)[path.name]
    assert spectrum["metadata"]["columns"]["iref"] is None
    assert spectrum["values"]["e0_ref"] is None
    assert "mu_ref" not in spectrum["arrays"]
    assert spectrum["values"]["e0"] == pytest.approx(sample_e0(path), abs=0.01)
    scans = [v for _, v in read(tmp_path / "store", "raw-scans")]
    assert [sorted(s["channels"]) for s in scans] == [["i0", "if", "it"]]


def test_calibrate_with_iref_switched_off_says_so(tmp_path, run_unit, unit_message):
    p65_variant(P65_SCANS[0], tmp_path / "goe_Fe_K_240.00000.xdi", seed=0, noise=0)
    scans = run_unit(
        "xas.scan-files", params={"directory": str(tmp_path), "columns": {"iref": None}}
    )
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    result = run_unit("xas.normalize", inputs, params={**NORMALIZE, "calibrate": True})
    (record,) = result.errors
    assert record["error"] == (
        "goe_Fe_K_240.00000.xdi: calibrate needs the reference foil, but xas.scan-files "
        "switches its channel off (`columns: {iref: null}`)"
    )


@pytest.mark.parametrize(
    ("param", "value", "fix"),
    [("calibrate", True, "set calibrate: false here"), ("mode", "reference", "another mode")],
)
def test_validate_refuses_a_foil_asked_of_scans_without_one(tmp_path, param, value, fix):
    """`calibrate: true` (or `mode: reference`) on scans whose source reads no reference channel
    passed `pipeline validate` and failed each scan at run time, one error per file: the two
    settings are in two units, which validate now checks together, at the normalize value."""
    data = tmp_path / "data"
    data.mkdir()
    p65_variant(P65_SCANS[0], data / "goe_Fe_K_240.00000.xdi", seed=0, noise=0)
    units = scan_chain("data", {**NORMALIZE, param: value}, {}, columns={"iref": None})
    pipeline = write_pipeline(tmp_path, "no-iref", units)
    said_in_file = f'"{param}": {json.dumps(value)}'
    (line,) = [
        n for n, text in enumerate(pipeline.read_text().splitlines(), 1) if said_in_file in text
    ]
    for command in ("validate", "run"):
        refused = pipeline_command(pipeline, command)
        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 1, said
        assert "Traceback" not in said
        assert f"{pipeline.name}:{line}:" in said, said
        assert "P314" in said
        assert "its scans come from unit scans, which reads no reference channel" in said
        assert fix in said
    assert not (tmp_path / "store").exists()  # the run started nothing


def test_the_energy_column_cannot_be_switched_off(tmp_path):
    (tmp_path / "data").mkdir()
    units = scan_chain("data", NORMALIZE, columns={"energy": None})
    pipeline = write_pipeline(tmp_path, "no-energy", units)
    check = pipeline_command(pipeline, "validate")
    assert check.returncode != 0
    said = check.stdout + check.stderr
    assert "Traceback" not in said
    assert "energy cannot be switched off (`energy: null`)" in " ".join(said.split())


def _units(run_unit, unit_message, directory, normalize):
    scans = run_unit("xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi"})
    assert scans.errors == [], [e.get("error") for e in scans.errors]
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    return run_unit("xas.normalize", inputs, params=normalize)


def test_a_foil_out_of_the_beam_is_no_foil_and_the_scan_is_merged(tmp_path, run_unit, unit_message):
    """A second outside tester's third repeat had Iref a fixed share of It (the foil out of
    the beam): a flat ln(It/Iref), whose "E0" pre_edge put at 7352.92 eV. The merge took it for
    a foil 241 eV off and rejected the good sample scan. A foil without an edge is no foil."""
    data = tmp_path / "data"
    data.mkdir()
    for n, source in enumerate(P65_SCANS):
        p65_variant(source, data / f"goe_Fe_K_240.0000{n}.xdi", seed=n, noise=0.0)
    flat = p65_variant(P65_SCANS[0], data / "goe_Fe_K_240.00002.xdi", seed=7, noise=1e-4)
    table = columns(flat)
    table[:, P65_IREF] = 0.5 * table[:, P65_IT]
    header = [line for line in flat.read_text().splitlines() if line.startswith("#")]
    flat.write_text(
        "\n".join([*header, *(" ".join(repr(float(x)) for x in row) for row in table)]) + "\n"
    )
    result = _units(run_unit, unit_message, data, NORMALIZE)
    assert result.errors == [], result.errors
    spectra = {s["metadata"]["file"]: s for s in result.values("spectra")}
    note = spectra[flat.name]["metadata"]["reference"]
    assert note.startswith("the reference channel is unusable (the reference foil shows no edge")
    assert spectra[flat.name]["values"]["e0_ref"] is None
    merged = run_unit("xas.merge", list(spectra.values())).values("merged")[-1]
    assert (merged["n_scans"], merged["n_merged"]) == (3, 3), merged["rejected"]


def test_foil_points_dropped_at_its_edge_leave_no_foil_to_calibrate_by(
    tmp_path, run_unit, unit_message
):
    """Two Iref zeros in a row at the foil's E0 were dropped, and the foil's E0 found beside
    them: calibrated 0.5 eV off (a second outside tester). Points dropped within 5 eV of the
    foil's E0 leave it unusable: calibrate refuses the scan in one sentence, and without
    calibrate it is normalised without its foil."""
    table = columns(DATA / P65_SCANS[0])
    energy = table[:, P65_ENERGY]
    foil_e0 = larch_e0(energy, np.log(table[:, P65_IT] / table[:, P65_IREF]))
    at = sorted(np.argsort(np.abs(energy - foil_e0))[:2])
    assert at[1] - at[0] == 1  # two in a row: isolated enough to be dropped elsewhere
    data = tmp_path / "data"
    data.mkdir()
    p65_variant(P65_SCANS[0], data / "goe_Fe_K_240.00000.xdi", seed=0, noise=0.0, zero_iref=at)
    calibrated = _units(run_unit, unit_message, data, {**NORMALIZE, "calibrate": True})
    (error,) = calibrated.errors
    said = str(error.get("error", error))
    assert "calibrate needs the reference foil, but its channel is unusable" in said
    named = ", ".join(f"{e:.2f}" for e in energy[at])
    assert f"hold no count at {named} eV, within 5 eV of the foil's edge (E0 " in said, said
    plain = _units(run_unit, unit_message, data, NORMALIZE)
    (spectrum,) = plain.values("spectra")
    assert spectrum["values"]["e0_ref"] is None
    assert "so its E0 cannot be found without them" in spectrum["metadata"]["reference"]
