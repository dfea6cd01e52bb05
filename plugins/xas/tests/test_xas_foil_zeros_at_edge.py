"""Reference-foil points dropped on the foil's edge make the foil unusable, wherever the damaged
foil puts its E0.

An outside tester set Iref to 0 at the two points nearest the Fe foil's E0 (7110.98 and 7111.52
eV). Found without them, the foil's E0 moved to 7120.00 eV, 8.5 eV from them, so the "within 5
eV of the foil's E0" test passed: the run said "2 points of the reference foil dropped ... its E0
is found without them", labelled the scan from a foil E0 of 7120 eV, and with `calibrate: true`
moved the sample's E0 by -8.5 eV (7118.91 instead of 7127.39 eV). The dropped points are now also
tested against the E0 found across them and the tabulated edge the foil names.

Real P65 goethite scans (SOURCES.md) with Iref written 0; E0s by xraylarch at test time, from the
files' columns read with numpy."""

from __future__ import annotations

import numpy as np
import pytest
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

from asapo_pipelines_xas.normalize import FOIL_EDGE_GAP

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}


def foil_e0(table: np.ndarray, keep: np.ndarray | None = None) -> float:
    """xraylarch's E0 of ln(It/Iref), of the rows `keep` only when given."""
    keep = np.ones(len(table), bool) if keep is None else keep
    return larch_e0(table[keep, P65_ENERGY], np.log(table[keep, P65_IT] / table[keep, P65_IREF]))


def without(table: np.ndarray, rows: list[int]) -> np.ndarray:
    keep = np.ones(len(table), bool)
    keep[rows] = False
    return keep


def steepest_pair(source: str) -> list[int]:
    """The foil's E0 point and its neighbour whose dropping moves xraylarch's E0 the furthest
    (the tester's two zeros)."""
    table = np.loadtxt(DATA / source, comments="#")
    at = int(np.argmin(np.abs(table[:, P65_ENERGY] - foil_e0(table))))
    pairs = ([at - 1, at], [at, at + 1])
    return max(pairs, key=lambda rows: abs(foil_e0(table, without(table, rows)) - foil_e0(table)))


def damaged(directory, rows_of=steepest_pair) -> list:
    directory.mkdir(exist_ok=True)
    return [
        p65_variant(
            source,
            directory / f"zed_Fe_K.0000{n}.xdi",
            seed=0,
            noise=0.0,
            zero_iref=rows_of(source),
        )
        for n, source in enumerate(P65_SCANS)
    ]


def normalize(run_unit, unit_message, directory, params):
    scans = run_unit("xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi"})
    assert scans.errors == []
    inputs = [unit_message(o.value, metadata=o.metadata) for o in scans.outputs]
    return run_unit("xas.normalize", inputs, params=params)


def test_the_trap_is_real():
    """Found without the two points, the foil's E0 lies more than 5 eV from them."""
    for source in P65_SCANS:
        table = np.loadtxt(DATA / source, comments="#")
        rows = steepest_pair(source)
        moved = foil_e0(table, without(table, rows))
        assert np.min(np.abs(table[rows, P65_ENERGY] - moved)) > 5


def test_calibrate_refuses_a_foil_without_the_steepest_points_of_its_edge(
    tmp_path, run_unit, unit_message
):
    paths = damaged(tmp_path / "data")
    result = normalize(run_unit, unit_message, tmp_path / "data", {**NORMALIZE, "calibrate": True})
    assert result.values("spectra") == []  # never calibrated by a foil E0 8.5 eV off
    said = {record["error"].split(":")[0]: record["error"] for record in result.errors}
    assert sorted(said) == sorted(path.name for path in paths)
    for path, source in zip(paths, P65_SCANS, strict=True):
        table = np.loadtxt(DATA / source, comments="#")
        named = ", ".join(f"{e:.2f}" for e in sorted(table[steepest_pair(source), P65_ENERGY]))
        assert said[path.name].startswith(
            f"{path.name}: calibrate needs the reference foil, but its channel is unusable (It "
            f"or Iref hold no count at {named} eV, within 5 eV of the foil's edge (E0 "
        ), said[path.name]
        assert said[path.name].endswith(
            "so its E0 cannot be found without them), so this scan cannot be calibrated: set "
            "`calibrate: false` to normalise it on its energies as measured"
        )


def test_without_calibrate_the_scan_is_normalised_without_its_foil(
    tmp_path, run_unit, unit_message
):
    paths = damaged(tmp_path / "data")
    result = normalize(run_unit, unit_message, tmp_path / "data", NORMALIZE)
    assert result.errors == []
    spectra = {s["metadata"]["file"]: s for s in result.values("spectra")}
    for path in paths:
        spectrum = spectra[path.name]
        table = np.loadtxt(path, comments="#")
        sample = larch_e0(table[:, P65_ENERGY], np.log(table[:, P65_I0] / table[:, P65_IT]))
        assert spectrum["values"]["e0"] == pytest.approx(sample, abs=0.01)
        assert spectrum["values"]["e0_ref"] is None  # not a foil E0 of 7120 eV
        assert "mu_ref" not in spectrum["arrays"]
        assert spectrum["metadata"]["reference"].startswith(
            "the reference channel is unusable (It or Iref hold no count at "
        )


def test_zeros_up_the_edge_beyond_its_e0_are_still_dropped(tmp_path, run_unit, unit_message):
    """Two zeros 8 eV above the foil's E0 (the rise's second maximum) leave xraylarch's E0 where
    it is: they are dropped, and the foil calibrates the scan."""
    from xraydb import xray_edge

    def up_the_edge(source: str) -> list[int]:
        table = np.loadtxt(DATA / source, comments="#")
        at = int(np.argmin(np.abs(table[:, P65_ENERGY] - foil_e0(table) - 8.0)))
        return [at, at + 1]

    paths = damaged(tmp_path / "data", up_the_edge)
    result = normalize(run_unit, unit_message, tmp_path / "data", {**NORMALIZE, "calibrate": True})
    assert result.errors == []
    spectra = {s["metadata"]["file"]: s for s in result.values("spectra")}
    for path, source in zip(paths, P65_SCANS, strict=True):
        table = np.loadtxt(DATA / source, comments="#")
        intact = foil_e0(table)
        assert foil_e0(table, without(table, up_the_edge(source))) == pytest.approx(
            intact, abs=0.01
        )
        spectrum = spectra[path.name]
        assert spectrum["metadata"]["reference"].startswith(
            "2 points of the reference foil dropped"
        )
        shift = float(xray_edge("Fe", "K").energy) - intact
        assert spectrum["values"]["energy_shift"] == pytest.approx(shift, abs=0.01)


def _at_tabulated(source: str, shift: float) -> list[int]:
    """The two points nearest the tabulated Fe K edge (xraydb) of the file moved by `shift`."""
    from xraydb import xray_edge

    energy = np.loadtxt(DATA / source, comments="#")[:, P65_ENERGY] + shift
    at = int(np.argmin(np.abs(energy - float(xray_edge("Fe", "K").energy))))
    return [at - 1, at] if at + 1 == len(energy) else [at, at + 1]


@pytest.mark.parametrize("shift", [8.0, -8.0])
def test_zeros_at_the_tabulated_edge_of_a_foil_8_ev_off(tmp_path, run_unit, unit_message, shift):
    """A mono 8 eV off puts the tabulated Fe K edge 8 eV from the foil's: two zeros there were
    refused as "within 5 eV of the foil's edge", also where the foil is flat (8 eV above: its
    pre-edge) and its E0 the same with and without them. Such a foil now calibrates the scan;
    where the foil rises across the zeros (8 eV below: up its edge), the sentence says so."""
    from xraydb import xray_edge

    tabulated = float(xray_edge("Fe", "K").energy)
    paths = []
    for n, source in enumerate(P65_SCANS):
        rows = _at_tabulated(source, shift)
        path = tmp_path / "data" / f"off_Fe_K.0000{n}.xdi"
        path.parent.mkdir(exist_ok=True)
        paths.append(p65_variant(source, path, seed=0, noise=0.0, shift=shift, zero_iref=rows))
    result = normalize(run_unit, unit_message, tmp_path / "data", {**NORMALIZE, "calibrate": True})
    for path, source in zip(paths, P65_SCANS, strict=True):
        table = np.loadtxt(DATA / source, comments="#")
        table[:, P65_ENERGY] += shift
        rows = _at_tabulated(source, shift)
        intact = foil_e0(table)
        # by xraylarch: the zeros leave the foil's E0 where it is, 8 eV from the table's
        assert foil_e0(table, without(table, rows)) == pytest.approx(intact, abs=0.01)
        assert abs(intact - tabulated) > FOIL_EDGE_GAP
        if shift > 0:
            spectrum = {s["metadata"]["file"]: s for s in result.values("spectra")}[path.name]
            assert spectrum["metadata"]["reference"].startswith(
                "2 points of the reference foil dropped"
            )
            assert spectrum["values"]["energy_shift"] == pytest.approx(tabulated - intact, abs=0.01)
            # the sample's E0 by xraylarch on the energies the foil calibrates
            moved = table[:, P65_ENERGY] + tabulated - intact
            sample = larch_e0(moved, np.log(table[:, P65_I0] / table[:, P65_IT]))
            assert spectrum["values"]["e0"] == pytest.approx(sample, abs=0.01)
        else:
            (error,) = [e["error"] for e in result.errors if path.name in e["error"]]
            assert "It or Iref hold no count at" in error
            assert "and the foil rises across them by" in error
    if shift > 0:
        assert result.errors == []
