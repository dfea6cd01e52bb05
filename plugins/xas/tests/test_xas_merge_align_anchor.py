"""The alignment's anchor is the majority's foil, not the first scan's: one scan measured with
its energy scale shifted (a monochromator glitch) neither rejects three good repeats beyond
`max_align_shift` nor puts them on its scale. Real P65 files (the outside tester's variants:
energies shifted, It with 1e-5 relative noise so that each is another measurement), normalised
and merged by the units' code; the reference merge is xraylarch's `merge_groups` and
`pre_edge` at test time."""

from __future__ import annotations

from pathlib import Path

import pytest
from xas_testdata import P65_SCANS, REFERENCE_SETTINGS, p65_variant

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan


def variant(source: str, path: Path, shift: float = 0.0, seed: int = 0) -> Path:
    """A copy of a P65 file with the energy shifted by `shift` eV and It changed by 1e-5
    relative noise (the tester's mk.py `variant`)."""
    return p65_variant(source, path, seed=seed, noise=1e-5, shift=shift)


def scans(folder: Path, shift: float) -> list[Path]:
    """goe_001 shifted by `shift` eV, first by acquisition order; goe_002-004 good repeats."""
    first = variant(P65_SCANS[0], folder / "goe_001.xdi", shift, seed=11)
    good = [variant(P65_SCANS[i % 2], folder / f"goe_00{i}.xdi", seed=i) for i in (2, 3, 4)]
    return [first, *good]


def merge(paths: list[Path]) -> dict:
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})
    merger = Merger(MergeParams(align="reference"))
    for path in paths:
        result = merger.add(normalize_scan(read_scan(path), params))
    return result.to_json()


def larch_e0(folder: Path, result: dict, names: list[str]) -> float:
    """E0 of xraylarch's merge of `names` shifted as the merge reports (larch's pre_edge)."""
    from larch import Group
    from larch.io import merge_groups
    from larch.xafs import pre_edge

    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})
    shifts = {s["scan"]: s["shift"] for s in result["scans"]}
    groups = []
    for name in names:
        spectrum = normalize_scan(read_scan(folder / name), params)
        energy = spectrum.arrays["energy"] + shifts[name]
        groups.append(Group(energy=energy, mu=spectrum.arrays["mu"]))
    merged = merge_groups(groups, xarray="energy", yarray="mu", kind="cubic", trim=True)
    pre_edge(merged)
    return float(merged.e0)


def test_a_scan_shifted_beyond_max_align_shift_is_the_one_rejected(tmp_path):
    result = merge(scans(tmp_path, 12.0))
    good = ["goe_002.xdi", "goe_003.xdi", "goe_004.xdi"]
    assert [r["scan"] for r in result["rejected"]] == ["goe_001.xdi"]
    assert "alignment shift -12.0" in result["rejected"][0]["reasons"][0]
    assert sorted(result["accepted"]) == good
    assert result["values"]["e0"] == pytest.approx(larch_e0(tmp_path, result, good), abs=0.3)


def test_a_drifted_first_scan_is_aligned_onto_the_majority_not_the_majority_onto_it(tmp_path):
    result = merge(scans(tmp_path, 4.0))
    assert result["n_merged"] == 4
    shifts = {s["scan"]: s["shift"] for s in result["scans"]}
    assert shifts["goe_001.xdi"] == pytest.approx(-4.0, abs=0.2)
    # the good scans' own energy scale: what xraylarch gives for them merged unshifted
    unshifted = {"scans": [{"scan": f"goe_00{i}.xdi", "shift": 0.0} for i in (2, 3, 4)]}
    want = larch_e0(tmp_path, unshifted, ["goe_002.xdi", "goe_003.xdi", "goe_004.xdi"])
    assert result["values"]["e0"] == pytest.approx(want, abs=0.3)
