"""The no-majority sentence names every scan it counts: two against two (the outside tester's
m3_001..m3_004, the last two 3 eV off, `align: none`) said "the 4 scans screened ... disagree"
and listed three of them. Real P65 files, normalised and merged by the units' code."""

from __future__ import annotations

from test_xas_merge_align_anchor import variant
from xas_testdata import P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan


def test_two_against_two_names_all_four_scans(tmp_path):
    paths = [
        variant(P65_SCANS[(i - 1) % 2], tmp_path / f"m3_00{i}.xdi", 3.0 * (i > 2), seed=i)
        for i in (1, 2, 3, 4)
    ]
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, "mode": "transmission"})
    spectra = [normalize_scan(read_scan(p), params) for p in paths]
    merger = Merger(MergeParams(align="none"))
    result = [merger.add(s) for s in spectra][-1].to_json()
    assert result["n_merged"] == 0
    reason = result["no_majority"]["reason"]
    assert reason.startswith("the 4 scans screened for E0 and edge step disagree (")
    for path, spectrum in zip(paths, spectra, strict=True):
        assert f"{path.name}: E0 {spectrum.values['e0']:.2f} eV" in reason
