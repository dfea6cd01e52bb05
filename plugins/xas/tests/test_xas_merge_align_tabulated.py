"""Two scans whose reference foils disagree (no majority): the foil is there to calibrate, so the
anchor of the alignment is the scan whose foil's E0 is nearest the tabulated edge, not the
first measured (the outside tester: scan 0's energy axis 12 eV off, foil included, rejected
scan 1, the correct one, "alignment shift +12.03 eV beyond max_align_shift", and merged the
miscalibrated scan at E0 7138.91 eV). Real P65 files (variants: energies shifted, It with
1e-3 relative noise so that each is another measurement), normalised and merged by the units'
code; the foils' E0s are xraylarch's `pre_edge` on ln(It/Iref) and the edge energy xraydb's
`xray_edge`, at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from xas_testdata import P65_SCANS, REFERENCE_SETTINGS, p65_variant

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

#: P65 columns: 0 energy, 10 I0, 11 It, 12 Iref
ENERGY, IT, IREF = 0, 11, 12
STEM = P65_SCANS[0].rsplit(".", 2)[0]
PARAMS = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})


def variant(source: str, path: Path, shift: float = 0.0, seed: int = 0) -> Path:
    """`source` with its energies (foil's included) shifted by `shift` eV and It changed by
    1e-3 relative noise."""
    return p65_variant(source, path, seed=seed, noise=1e-3, shift=shift)


def pair(folder: Path, shift: float) -> list[Path]:
    """Scan 0 (first measured) with its energy scale `shift` eV off; scan 1 as measured."""
    return [
        variant(P65_SCANS[0], folder / f"{STEM}.00000.xdi", shift, seed=1),
        variant(P65_SCANS[1], folder / f"{STEM}.00001.xdi", seed=2),
    ]


def merge(paths: list[Path], drop_identity: bool = False) -> dict:
    merger = Merger(MergeParams(align="reference"))
    for path in paths:
        spectrum = normalize_scan(read_scan(path), PARAMS)
        if drop_identity:  # a spectrum that does not say which edge it is
            spectrum.metadata.pop("element")
            spectrum.metadata.pop("edge")
        result = merger.add(spectrum)
    return result.to_json()


def larch_foil_e0(path: Path) -> float:
    """E0 of the scan's reference foil, ln(It/Iref), by xraylarch's `pre_edge`."""
    from larch import Group
    from larch.xafs import pre_edge

    rows = [r for r in path.read_text().splitlines() if r.strip() and not r.startswith("#")]
    data = np.array([[float(x) for x in r.split()] for r in rows])
    data = data[np.argsort(data[:, ENERGY])]
    _, keep = np.unique(data[:, ENERGY], return_index=True)
    data = data[keep]
    foil = Group(energy=data[:, ENERGY], mu=np.log(data[:, IT] / data[:, IREF]))
    pre_edge(foil)
    return float(foil.e0)


def fe_k() -> float:
    from xraydb import xray_edge

    return float(xray_edge("Fe", "K").energy)


def test_the_scan_whose_foil_is_off_the_tabulated_edge_is_the_one_rejected(tmp_path):
    paths = pair(tmp_path, 12.0)
    result = merge(paths)
    assert result["accepted"] == [paths[1].name]
    (rejected,) = result["rejected"]
    assert rejected["scan"] == paths[0].name
    off, good = larch_foil_e0(paths[0]) - fe_k(), larch_foil_e0(paths[1]) - fe_k()
    assert off == pytest.approx(11.5, abs=1.0)
    assert abs(good) < 1.5
    (reason,) = rejected["reasons"]
    assert reason.startswith("alignment shift -12.0")
    # the reason says which foil is off the edge, by how much (xraylarch's E0, within its grid)
    said = reason.split("its reference foil's E0 ")[1]
    assert float(said.split(" eV is ")[1].split(" eV")[0]) == pytest.approx(off, abs=0.3)
    assert "from the tabulated Fe K edge" in reason
    assert f"that of scan {paths[1].name}, the anchor, " in reason
    # the merge is scan 1's, on its own energy scale: its E0, not 12 eV above it
    scan1 = normalize_scan(read_scan(paths[1]), PARAMS)
    assert result["values"]["e0"] == pytest.approx(scan1.values["e0"], abs=0.3)


def test_a_scan_4_ev_off_is_aligned_onto_the_one_nearer_the_edge_whichever_is_first(tmp_path):
    for folder, shift in (("first-off", 4.0), ("second-off", -4.0)):
        (tmp_path / folder).mkdir()
        paths = pair(tmp_path / folder, 0.0)
        off = 0 if shift > 0 else 1
        variant(P65_SCANS[off], paths[off], shift, seed=1 + off)
        result = merge(paths)
        assert result["n_merged"] == 2
        shifts = {s["scan"]: s["shift"] for s in result["scans"]}
        assert shifts[paths[off].name] == pytest.approx(-shift, abs=0.2)
        assert shifts[paths[1 - off].name] == 0.0


def test_without_a_known_edge_the_first_measured_is_the_anchor(tmp_path):
    paths = pair(tmp_path, 4.0)
    result = merge(paths, drop_identity=True)
    shifts = {s["scan"]: s["shift"] for s in result["scans"]}
    assert shifts[paths[0].name] == 0.0
    assert shifts[paths[1].name] == pytest.approx(4.0, abs=0.2)
