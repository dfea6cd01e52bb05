"""A fixed `pre_edge.e0` outside the scan's energies: xraylarch ignores it and finds E0 itself,
so a Cu pipeline's `e0: 8990` gave the Fe foil E0 7111 eV while the parameters recorded with the
result (and in the NeXus file) said 8990. Now that scan is refused with one sentence naming the
file; a fixed e0 within the scan is used as given."""

from __future__ import annotations

import pytest
from xas_testdata import DATA

from asapo_pipelines_xas.errors import SpectrumError
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import NormalizeParams
from asapo_pipelines_xas.readers import read_scan

FE = "fe_metal_rt.xdi"  # Fe foil, mutrans only


def test_a_fixed_e0_outside_the_scan_refuses_it_naming_the_file() -> None:
    scan = read_scan(DATA / FE)
    params = NormalizeParams.model_validate({"mode": "mu", "pre_edge": {"e0": 8990}})
    with pytest.raises(SpectrumError) as refused:
        normalize_scan(scan, params)
    said = str(refused.value)
    energy = scan.energy
    usable = f"outside {energy[1]:.1f} to {energy[-2]:.1f} eV"
    assert said.startswith(f"{FE}: the fixed pre_edge.e0 8990 eV is {usable}"), said
    # the file's own range beside the one xraylarch uses: they differ by a point at each end
    assert f"it runs {energy[0]:.1f} to {energy[-1]:.1f} eV" in said, said
    assert "xraylarch would ignore it" in said


def test_energies_that_look_like_kev_are_pointed_at_when_normalising_fails() -> None:
    """A file whose energies are keV in a column that says eV (or nothing): xraylarch's words
    alone ("x must be strictly increasing") do not point at the unit."""
    from asapo_pipelines_xas.readers import Scan

    scan = read_scan(DATA / FE)
    in_kev = Scan(scan.energy / 1000.0, scan.channels, dict(scan.metadata))
    with pytest.raises(SpectrumError) as refused:
        normalize_scan(in_kev, NormalizeParams.model_validate({"mode": "mu"}))
    said = str(refused.value)
    assert said.startswith(f"{FE}: "), said
    low, high = float(in_kev.energy.min()), float(in_kev.energy.max())
    assert f"its energies run from {low:g} to {high:g}, as if in keV" in said, said
    assert "label the energy column keV" in said
    # a scan in eV that fails says nothing of keV
    with pytest.raises(SpectrumError) as other:
        normalize_scan(scan, NormalizeParams.model_validate({"mode": "mu", "autobk": {"kmin": 15}}))
    assert "keV" not in str(other.value)


def test_a_fixed_e0_within_the_scan_is_the_e0_used() -> None:
    from larch import Group
    from larch.xafs import pre_edge

    scan = read_scan(DATA / FE)
    params = NormalizeParams.model_validate({"mode": "mu", "pre_edge": {"e0": 7115.0}})
    spectrum = normalize_scan(scan, params)
    # what xraylarch makes of the same fixed e0, called by hand
    group = Group()
    pre_edge(scan.energy, scan.channel("mu"), group=group, e0=7115.0)
    assert spectrum.values["e0"] == pytest.approx(float(group.e0))
    assert spectrum.values["e0"] == pytest.approx(7115.0)
