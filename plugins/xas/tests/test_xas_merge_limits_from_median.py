"""`max_e0_shift` is a distance from the group's median E0, not between scans, as its
description and the tutorial say: accepted scans can differ by up to twice it. The outside
tester's case: one P65 scan with its energies shifted by 0, 0.9, 1.8 and 2.7 eV (It with 1e-5
relative noise: four measurements), `align: none`, `max_e0_shift: 1`. Normalised and merged by
the units' code; the E0s are xraylarch's pre_edge on each file at test time."""

from __future__ import annotations

import numpy as np
import pytest
from test_xas_merge_align_anchor import variant
from xas_testdata import P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

SHIFTS = (0.0, 0.9, 1.8, 2.7)


def test_accepted_scans_differ_by_up_to_twice_max_e0_shift(tmp_path):
    from larch import Group
    from larch.xafs import pre_edge

    paths = [
        variant(P65_SCANS[0], tmp_path / f"s_00{i}.xdi", shift, seed=i)
        for i, shift in enumerate(SHIFTS, start=1)
    ]
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})
    merger = Merger(MergeParams(align="none", max_e0_shift=1.0))
    for path in paths:
        result = merger.add(normalize_scan(read_scan(path), params)).to_json()
    assert result["accepted"] == [p.name for p in paths[:3]]
    assert [r["scan"] for r in result["rejected"]] == [paths[3].name]
    e0 = {}
    for path in paths:
        spectrum = normalize_scan(read_scan(path), params)
        group = Group(energy=spectrum.arrays["energy"], mu=spectrum.arrays["mu"])
        pre_edge(group)
        e0[path.name] = float(group.e0)
    accepted = [e0[name] for name in result["accepted"]]
    # further apart than max_e0_shift, each within it of the median
    assert max(accepted) - min(accepted) == pytest.approx(1.8, abs=0.05)
    assert all(abs(v - np.median(accepted)) <= 1.0 for v in accepted)


@pytest.mark.parametrize("param", ["max_e0_shift", "max_edge_step_deviation"])
def test_the_param_description_says_so(param):
    """What `pipeline schema` and editors show for the param."""
    description = MergeParams.model_json_schema()["properties"][param]["description"]
    assert "from the group's (the median over the majority)" in description
    assert "accepted scans can differ from each other by up to" in description
