"""Merging repeats (noise, outliers, redelivery) and the convergence agent's decisions."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import Spectrum
from asapo_pipelines_xas.params import ConvergenceParams, MergeParams


def _variant(spectrum: Spectrum, name: str, **changes) -> Spectrum:
    """A copy of a spectrum as if it were another scan, with some values or arrays changed.

    Another measurement never has the same mu point by point (the merge rejects such a copy,
    or the same file saved again, as a duplicate): mu gets noise of 2e-4, a fifth of what the
    two P65 repeats differ by, too little for any other screening to see."""
    arrays = {k: v.copy() for k, v in spectrum.arrays.items()}
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    arrays["mu"] = arrays["mu"] + 2e-4 * rng.standard_normal(len(arrays["mu"]))
    values = dict(spectrum.values)
    for key, value in changes.items():
        (arrays if isinstance(value, np.ndarray) else values)[key] = value
    return Spectrum({**spectrum.metadata, "file": name}, arrays, values, spectrum.settings)


def test_merging_two_repeats_lowers_the_noise(p65_scans, p65_spectra):
    from larch import Group
    from larch.xafs import pre_edge

    from asapo_pipelines_xas.normalize import compute_mu

    merger = Merger()
    first = merger.add(p65_spectra[0])
    second = merger.add(p65_spectra[1])
    assert (first.n_merged, second.n_merged) == (1, 2)
    singles = [s.epsilon_k for s in p65_spectra]
    assert second.values["epsilon_k"] < min(singles)
    # 1/sqrt(2) = 0.71 for white noise; this sample's high-R part is not all noise (0.87)
    assert second.values["epsilon_k"] < 0.92 * float(np.mean(singles))
    # the merge is an average: E0 and step stay those of the sample
    sample = Group(energy=p65_scans[0].energy, mu=compute_mu(p65_scans[0], "transmission"))
    pre_edge(sample)  # xraylarch on the first scan alone
    assert second.values["e0"] == pytest.approx(sample.e0, abs=0.5)
    assert second.values["edge_step"] == pytest.approx(sample.edge_step, rel=0.02)
    # standard error of the mean of two scans: |a - b| / 2 at each energy
    merged_mu = second.arrays["mu"]
    assert second.arrays["mu_stderr"].shape == merged_mu.shape
    assert np.nanmedian(second.arrays["mu_stderr"]) > 0
    assert second.accepted == [s.metadata["file"] for s in p65_spectra]


def test_the_merge_of_all_scans_does_not_depend_on_their_arrival_order(p65_spectra):
    # a transport promises no order; the anchor of the alignment is the first scan measured
    in_order, swapped = Merger(), Merger()
    for spectrum in p65_spectra:
        want = in_order.add(spectrum)
    for spectrum in reversed(p65_spectra):
        got = swapped.add(spectrum)
    assert [s["scan"] for s in got.scans] == [s["scan"] for s in want.scans]
    assert got.scans[0]["shift"] == 0.0
    for key in ("e0", "edge_step", "epsilon_k"):
        assert got.values[key] == want.values[key], key
    np.testing.assert_array_equal(got.arrays["mu"], want.arrays["mu"])


def test_alignment_on_the_reference_foil(p65_spectra):
    alone = Merger().add(p65_spectra[1])  # the first scan of a group is the anchor
    assert alone.scans[0]["shift"] == 0.0
    merger = Merger()
    merger.add(p65_spectra[0])
    both = merger.add(p65_spectra[1])
    # the foils' E0s (max of dmu/dE on a ~0.5 eV grid) differ by 0.13 eV; the least-squares
    # fit of their derivatives finds the two consistent: the shift is within its own error of
    # zero and far below that difference (against xraylarch: test_xas_against_larch.py)
    e0_difference = p65_spectra[0].values["e0_ref"] - p65_spectra[1].values["e0_ref"]
    shift, err = both.scans[1]["shift"], both.scans[1]["shift_err"]
    assert abs(shift) < 2 * err < abs(e0_difference)
    none = Merger(MergeParams(align="none"))
    none.add(p65_spectra[0])
    assert none.add(p65_spectra[1]).scans[1]["shift"] == 0.0


def test_a_redelivered_scan_is_not_counted_twice(p65_spectra):
    merger = Merger()
    merger.add(p65_spectra[0])
    once = merger.add(p65_spectra[1])
    twice = merger.add(Spectrum.from_json(json.loads(json.dumps(p65_spectra[1].to_json()))))
    assert twice.n_merged == 2
    np.testing.assert_allclose(twice.arrays["mu"], once.arrays["mu"])


def test_beam_loss_is_rejected(p65_spectra):
    i0 = p65_spectra[1].arrays["i0"].copy()
    i0[400:440] *= 0.05  # the beam dumped for 40 points
    dumped = _variant(p65_spectra[1], "dump.xdi", i0=i0)
    merger = Merger()
    merger.add(p65_spectra[0])
    result = merger.add(dumped)
    assert result.n_merged == 1
    assert not result.latest_accepted
    assert result.rejected[0]["scan"] == "dump.xdi"
    assert "beam loss" in result.rejected[0]["reasons"][0]
    assert "40 points" in result.rejected[0]["reasons"][0]


def test_edge_step_and_e0_outliers_are_rejected(p65_spectra):
    base = p65_spectra[0]
    merger = Merger(MergeParams(max_e0_shift=1.0, max_edge_step_deviation=0.1))
    merger.add(base)
    merger.add(p65_spectra[1])
    thin = _variant(base, "thin.xdi", edge_step=base.edge_step * 0.6)
    # the sample's edge moved by 3 eV: its E0 and its normalised mu, which the screening
    # compares (where it crosses half the edge step); the foil's not
    norm = np.interp(base.energy - 3.0, base.energy, base.arrays["norm"])
    shifted = _variant(base, "shifted.xdi", e0=base.e0 + 3.0, norm=norm)
    merger.add(thin)
    result = merger.add(shifted)
    reasons = {r["scan"]: " ".join(r["reasons"]) for r in result.rejected}
    assert set(reasons) == {"thin.xdi", "shifted.xdi"}
    assert "edge step" in reasons["thin.xdi"]
    assert "limit 10%" in reasons["thin.xdi"]
    # the group value is the median of the four scans, so the offset is close to +3 eV
    assert re.search(r"E0 [0-9.]+ eV is \+2\.[5-9]\d eV .*\(limit 1 eV\)", reasons["shifted.xdi"])
    assert result.n_merged == 2


def test_merge_groups_by_sample(p65_spectra):
    other = _variant(p65_spectra[1], "other.xdi")
    other.metadata["sample"] = "hematite"
    merger = Merger()
    merger.add(p65_spectra[0])
    result = merger.add(other)
    assert result.n_merged == 1
    assert result.group["sample"] == "hematite"


# -- agent ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def merges(p65_spectra):
    merger = Merger()
    return [merger.add(s) for s in p65_spectra]


def test_agent_asks_for_more_then_stops_at_the_target(merges, p65_spectra):
    single = merges[0].values["epsilon_k"]
    merged = merges[1].values["epsilon_k"]
    assert merged < single
    target = (single + merged) / 2  # between the single-scan and the merged noise
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target, plan_name="p65_xas_scan"))

    more = agent.decide(merges[0])
    assert more["action"] == "more_scans"
    needed = int(np.ceil((single / target) ** 2))
    assert more["arguments"]["scans"] == needed - 1 >= 1
    assert "1/sqrt(N)" in more["reason"]
    assert 0 < more["confidence"] <= 1
    item = more["item"]
    assert item["item_type"] == "plan"
    assert item["name"] == "p65_xas_scan"
    assert item["args"] == []
    assert item["kwargs"]["repeats"] == more["arguments"]["scans"]
    assert item["kwargs"]["sample"] == "20K_GOE_Fe_K_240"
    assert more["target"]["element"] == "Fe"

    stop = agent.decide(merges[1].to_json())
    assert stop["action"] == "stop"
    assert "reached the target" in stop["reason"]
    assert stop["item"] is None
    # a plain JSON document, as it goes on the wire
    json.dumps(stop, allow_nan=False)


def test_agent_stops_at_max_scans(merges):
    # 1/sqrt(N) reaches this target with 2 scans (within max_scans); the merge of 2 does not
    target = 0.75 * merges[0].values["epsilon_k"]
    assert merges[1].values["epsilon_k"] > target
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target, max_scans=2))
    assert agent.decide(merges[0])["arguments"]["scans"] == 1  # capped by max_scans
    # asked for and not arrived: the same merge again asks for nothing more
    assert agent.decide(merges[0])["arguments"]["scans"] == 0
    decision = agent.decide(merges[1])
    assert decision["action"] == "stop"
    assert "maximum of 2 scans" in decision["reason"]


def test_agent_caps_the_batch(merges):
    # 1/sqrt(N) needs about 100 scans: within max_scans, far beyond max_batch
    target = merges[0].values["epsilon_k"] / 10
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target, max_batch=4, max_scans=1000))
    decision = agent.decide(merges[0])
    assert decision["action"] == "more_scans"
    assert decision["arguments"]["scans"] == 4
    assert 90 < decision["metrics"]["predicted_scans_total"] <= 1000


def test_agent_stops_when_the_spectrum_is_stable(merges):
    agent = ConvergenceAgent(
        ConvergenceParams(
            target_noise=merges[0].values["epsilon_k"] / 10,
            max_scans=1000,
            stability_tolerance=0.05,
            stability_min_scans=2,
        )
    )
    assert agent.decide(merges[0])["action"] == "more_scans"
    decision = agent.decide(merges[1])
    assert decision["action"] == "stop"
    assert "changed by" in decision["reason"]
    assert decision["metrics"]["change_since_previous"] < 0.05


def test_agent_flags_bad_scans_and_asks_to_change_parameters(p65_spectra):
    merger = Merger()
    merger.add(p65_spectra[0])
    for n in range(3):
        i0 = p65_spectra[1].arrays["i0"].copy()
        i0[100 * n : 100 * n + 20] = 0.0
        result = merger.add(_variant(p65_spectra[1], f"dump{n}.xdi", i0=i0))
    agent = ConvergenceAgent(ConvergenceParams(target_noise=1e-6))
    decision = agent.decide(result)
    assert decision["action"] == "change_parameters"
    assert [b["scan"] for b in decision["bad_scans"]] == ["dump0.xdi", "dump1.xdi", "dump2.xdi"]
    assert "3 of 4 scans were rejected" in decision["reason"]
    assert any("beam loss" in c for c in decision["arguments"]["check"])


def test_each_add_fits_only_the_alignments_it_has_not_fitted(p65_spectra, monkeypatch):
    """Every add re-screens the whole group; a scan's foil is fitted once per anchor, and again
    only when the scan is redelivered (a new spectrum) or the anchor changes."""
    from asapo_pipelines_xas import merge

    fits: list[int] = []
    real = merge.fit_alignment
    monkeypatch.setattr(merge, "fit_alignment", lambda *a, **k: fits.append(1) or real(*a, **k))
    merger = Merger(MergeParams(max_e0_shift=3.0))
    third = _variant(p65_spectra[1], "third.xdi")
    redelivered = Spectrum.from_json(p65_spectra[1].to_json())  # as a worker receives it again
    counts = []
    for spectrum in (p65_spectra[0], p65_spectra[1], third, redelivered):
        merger.add(spectrum)
        counts.append(len(fits))
    assert counts == [0, 1, 2, 3]
    # the first scan redelivered with beam loss: the second becomes the anchor; the third and
    # the rejected first (its shift is still reported) are fitted against it
    lost = _variant(p65_spectra[0], p65_spectra[0].metadata["file"])
    lost.arrays["i0"][:] = 0.0
    result = merger.add(lost)
    assert len(fits) == 5
    assert [s["shift"] for s in result.scans if s["scan"] == p65_spectra[1].metadata["file"]] == [
        0.0
    ]
