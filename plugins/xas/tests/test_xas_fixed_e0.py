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
    assert said.startswith(f"{FE}: the fixed pre_edge.e0 8990 eV is outside the scan's energies")
    assert "xraylarch would ignore it" in said


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
