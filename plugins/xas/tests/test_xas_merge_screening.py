"""Scans that must not enter a merge as independent repeats: a partial scan (range coverage), a
copy of an earlier scan (duplicate), scans normalised with older settings; and the agent's
decisions around them (noise windows, targets out of reach). Real P65 data throughout; the
references are the bundled repeats merged alone, or xraylarch called directly."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import Spectrum, normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

#: the P65 example's advisor (examples/p65-xas.pipeline.yaml)
P65_ADVISOR = {"target_noise": 1.2e-4, "max_scans": 20}
#: the QA reproduction: the first 1100 lines of the second repeat (ends near 7554 eV)
PARTIAL_LINES = 1100


def _normalise(path: Path, **settings) -> Spectrum:
    params = NormalizeParams.model_validate({**REFERENCE_SETTINGS, **settings})
    return normalize_scan(read_scan(path), params)


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> Spectrum:
    """The second repeat cut short, under the next scan number (an interrupted scan)."""
    path = tmp_path_factory.mktemp("partial") / "20K_GOE_Fe_K_240.00002.xdi"
    lines = (DATA / P65_SCANS[1]).read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:PARTIAL_LINES]))
    return _normalise(path)


@pytest.fixture(scope="module")
def clean(p65_spectra):
    """The merges of the two complete repeats: what the group should give."""
    merger = Merger()
    return [merger.add(s) for s in p65_spectra]


def _decisions(merges) -> list[dict]:
    agent = ConvergenceAgent(ConvergenceParams(**P65_ADVISOR))
    return [agent.decide(m) for m in merges]


# -- bug 1: a partial scan ---------------------------------------------------------------------


def test_a_partial_scan_is_rejected_and_does_not_cut_the_merge(p65_spectra, partial, clean):
    end = float(partial.arrays["energy"].max())
    full_end = min(float(s.arrays["energy"].max()) for s in p65_spectra)
    assert end < full_end - 500  # the data really are partial
    merger = Merger()
    result = [merger.add(s) for s in (*p65_spectra, partial)][-1]
    assert result.accepted == [s.metadata["file"] for s in p65_spectra]
    assert [r["scan"] for r in result.rejected] == [partial.metadata["file"]]
    reason = result.rejected[0]["reasons"][0]
    # what the scientist reads: the scan's range against the group's, in eV
    assert f"-{end:.0f} eV" in reason
    assert re.search(rf"\d+% of the group's \d+-{full_end:.0f} eV", reason), reason
    # the merge covers the full repeats' range and is the merge of those two
    assert result.arrays["energy"].max() == pytest.approx(clean[-1].arrays["energy"].max())
    assert result.values["noise_kmax"] == clean[-1].values["noise_kmax"]
    assert result.values["epsilon_k"] == clean[-1].values["epsilon_k"]


def test_a_partial_scan_read_first_is_neither_the_merge_range_nor_the_anchor(
    p65_spectra, partial, clean
):
    """Watch mode: a file read while still being written can come first."""
    merger = Merger()
    first = merger.add(partial)
    assert first.accepted == [partial.metadata["file"]]  # alone, there is nothing to compare
    for spectrum in p65_spectra:
        result = merger.add(spectrum)
    assert [r["scan"] for r in result.rejected] == [partial.metadata["file"]]
    np.testing.assert_array_equal(result.arrays["mu"], clean[-1].arrays["mu"])
    anchor = next(s for s in result.scans if s["scan"] == p65_spectra[0].metadata["file"])
    assert anchor["shift"] == 0.0


def test_the_agent_decides_on_a_partial_scan_as_without_it(p65_spectra, partial, clean):
    merger = Merger()
    merges = [merger.add(s) for s in (*p65_spectra, partial)]
    want = _decisions(clean)[-1]
    got = _decisions(merges)[-1]
    assert got["action"] == want["action"] == "more_scans"
    assert got["metrics"]["noise_model"] == want["metrics"]["noise_model"]
    assert got["metrics"]["predicted_scans_total"] == want["metrics"]["predicted_scans_total"]


def test_a_file_read_early_and_sent_again_complete_counts_once(p65_spectra, partial, clean):
    """Watch mode without file events: a scan file read before its writer finished is sent
    again when complete, naming the version it replaces (xas.scan-files' keys). The early read
    is superseded, not a faulty scan: the merge and the agent see one scan of that file."""
    source = "p65/scans|scans|key:"
    name = partial.metadata["file"]
    early = Spectrum.from_json(partial.to_json())
    early.metadata["scan_id"] = source + name
    complete = _normalise(DATA / P65_SCANS[1])
    complete.metadata.update(file=name, replaces=name, scan_id=f"{source}{name}@999-1")
    first = Spectrum.from_json(p65_spectra[0].to_json())
    first.metadata["scan_id"] = source + first.metadata["file"]
    merger = Merger()
    merges = [merger.add(s) for s in (first, early, complete)]
    result = merges[-1]
    assert result.n_merged == 2
    (rejected,) = result.rejected
    assert rejected["scan"] == source + name
    assert rejected["superseded"] is True
    assert "replaced by a later version of the same file" in rejected["reasons"][0]
    # the merged noise is that of the two complete repeats
    assert result.values["epsilon_k"] == pytest.approx(clean[-1].values["epsilon_k"], rel=1e-9)
    # the agent decides as on the two complete repeats
    decision, want = _decisions(merges)[-1], _decisions(clean)[-1]
    assert decision["action"] == want["action"] == "more_scans"
    assert decision["metrics"]["noise_model"] == want["metrics"]["noise_model"]


def test_the_agent_fits_only_noise_over_the_merges_k_window(clean, partial):
    """A scan's noise over another k window (as a merge without the coverage screening sent
    it) is left out of the floor fit, and the count says so."""
    doc = clean[-1].to_json()
    values = partial.values
    doc["scans"].append(
        {
            "scan": partial.metadata["file"],
            "accepted": True,
            "epsilon_k": values["epsilon_k"],
            "noise_kmin": values["noise_kmin"],
            "noise_kmax": values["noise_kmax"],
        }
    )
    assert abs(values["noise_kmax"] - doc["values"]["noise_kmax"]) > 1  # another window
    agent = ConvergenceAgent(ConvergenceParams(**P65_ADVISOR))
    agent.decide(clean[0])
    decision = agent.decide(doc)
    assert decision["metrics"]["noise_points_left_out"] == 1
    assert decision["metrics"]["noise_model"]["points"] == 3
    assert decision["action"] == _decisions(clean)[-1]["action"] == "more_scans"


# -- bug 2: a target out of reach before the floor fit ------------------------------------------


def test_the_agent_stops_when_even_no_floor_needs_more_than_max_scans(clean):
    """Out of reach even at 1/sqrt(N): after one scan the agent asks for one more (one scan
    cannot tell a bad scan from a noisy sample), after two it stops."""
    eps = clean[0].values["epsilon_k"]
    target = 1e-5
    needed = math.ceil((eps / target) ** 2)  # 1/sqrt(N), the most favourable case
    assert needed > P65_ADVISOR["max_scans"]
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target, max_scans=20))
    first = agent.decide(clean[0])
    assert first["action"] == "more_scans", first["reason"]
    assert first["arguments"]["scans"] == 1
    assert first["reason"].startswith(f"one scan only: its noise {eps:.2e} would need {needed} ")
    assert first["metrics"]["predicted_scans_total"] == needed
    # two scans as noisy as each other: the target is out of reach
    eps2 = clean[1].values["epsilon_k"]
    needed2 = math.ceil((eps2 * math.sqrt(2) / target) ** 2)
    assert needed2 > P65_ADVISOR["max_scans"]
    decision = agent.decide(clean[1])
    assert decision["action"] == "stop"
    assert decision["reason"].startswith("stop: target not reachable within max_scans")
    assert f"after {needed2} scans, more than max_scans 20" in decision["reason"]
    assert decision["item"] is None
    assert decision["metrics"]["predicted_scans_total"] == needed2
    # within max_scans it still asks
    reachable = ConvergenceAgent(ConvergenceParams(target_noise=eps / 4, max_scans=20))
    assert reachable.decide(clean[0])["action"] == "more_scans"


# -- bug 3: spectra normalised with different settings -------------------------------------------


def test_the_merge_uses_only_the_newest_settings_and_says_what_it_left_out(tmp_path):
    from larch import Group
    from larch.xafs import autobk, pre_edge

    old = [_normalise(DATA / name, autobk={"rbkg": 1.2, "kweight": 2}) for name in P65_SCANS]
    third = tmp_path / "20K_GOE_Fe_K_240.00002.xdi"
    # a third scan: the second repeat with its counts changed by 1 in 10^12 (not a copy)
    lines = (DATA / P65_SCANS[1]).read_text().splitlines(keepends=True)
    new = _normalise_other(lines, third, autobk={"rbkg": 1.5, "kweight": 2})
    merger = Merger()
    for spectrum in (*old, new):
        result = merger.add(spectrum)
    # a redelivered old spectrum (a restart) does not make its settings the newest again
    result = merger.add(Spectrum.from_json(old[0].to_json()))
    assert result.accepted == [third.name]
    assert [r["scan"] for r in result.rejected] == list(P65_SCANS)
    for rejected in result.rejected:
        assert rejected["superseded"] is True
        assert "autobk.rbkg 1.2, not 1.5" in rejected["reasons"][0]
    assert result.settings["autobk"]["rbkg"] == 1.5  # what was actually used
    # xraylarch on the new scan alone, with the new settings
    ref = Group(energy=new.arrays["energy"], mu=new.arrays["mu"])
    pre_edge(ref)
    autobk(ref, rbkg=1.5, kweight=2)
    assert result.values["e0"] == pytest.approx(ref.e0, abs=0.05)
    assert result.values["edge_step"] == pytest.approx(ref.edge_step, rel=1e-3)
    np.testing.assert_allclose(result.arrays["chi"], ref.chi, atol=1e-3)
    # scans left out for their settings are no sign of a beam or sample problem
    decision = ConvergenceAgent(ConvergenceParams(**P65_ADVISOR)).decide(result)
    assert decision["action"] != "change_parameters"


def _normalise_other(lines: list[str], path: Path, **settings) -> Spectrum:
    """Write the scan's lines with I0 (column 10) scaled by 1 + 1e-12 and normalise them."""
    out = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            out.append(line)
            continue
        cols = line.split()
        cols[10] = repr(float(cols[10]) * (1 + 1e-12))
        out.append(" ".join(cols) + "\n")
    path.write_text("".join(out))
    return _normalise(path, **settings)


# -- bug 4: the same file under a new scan number ------------------------------------------------


def test_a_copy_under_a_new_scan_number_is_rejected_as_a_duplicate(tmp_path, p65_spectra, clean):
    copy = tmp_path / "20K_GOE_Fe_K_240.00002.xdi"
    shutil.copyfile(DATA / P65_SCANS[1], copy)
    merger = Merger()
    result = [merger.add(s) for s in (*p65_spectra, _normalise(copy))][-1]
    assert result.n_merged == 2
    assert result.rejected == [
        {
            "scan": copy.name,
            "reasons": [
                f"duplicate of scan {P65_SCANS[1]}: the same measured data (energy, mu, I0), "
                "a copy rather than a repeat"
            ],
            "duplicate": True,  # the agent does not count copies as beam or sample failures
        }
    ]
    assert result.values["epsilon_k"] == clean[-1].values["epsilon_k"]
    # the agent's noise model sees two scans, not three
    got, want = _decisions([*clean, result])[-1], _decisions(clean)[-1]
    assert got["metrics"]["noise_model"]["points"] == want["metrics"]["noise_model"]["points"]
