"""When xas.merge's own `noise` settings differ from xas.normalize's, every noise the merge
reports is on the merge's scale. Before, the outside tester (merge kweight 3, normalize
kweight 2, the two P65 goethite repeats) saw `noise 0.0001062, single_scan_noise 0.0001547;
0.0001364`: the merge at kweight 3 beside the scans at kweight 2, a ratio of 0.73 that reads as
ideal averaging (0.89 on one scale), and the agent fitted a floor from N=1 points at kweight 2
and merges at kweight 3. Now each scan's noise is measured again with the merge's settings
(from the scan's own chi(k)), the merge says so (`noise_by_merge`), and so does the agent's
reason. References: xraylarch's `estimate_noise` on each file's chi(k) at test time."""

from __future__ import annotations

import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
MERGE_NOISE = {**REFERENCE_SETTINGS["noise"], "kweight": 3}


def spectra():
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import NormalizeParams
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate(NORMALIZE)
    return [normalize_scan(read_scan(DATA / name), params) for name in P65_SCANS]


def larch_noise(spectrum, kweight: float) -> float:
    """xraylarch's estimate_noise on the scan's chi(k), window kmin 2 to max(k) - 0.5."""
    from larch import Group
    from larch.xafs import estimate_noise

    k, chi = spectrum.arrays["k"], spectrum.arrays["chi"]
    group = Group()
    noise = REFERENCE_SETTINGS["noise"]
    estimate_noise(
        k, chi, group=group, rmin=noise["rmin"], rmax=noise["rmax"], kweight=kweight,
        kmin=noise["kmin"], kmax=float(k.max()) - 0.5,
    )  # fmt: skip
    return float(group.epsilon_k)


@pytest.fixture(scope="module")
def merges():
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.params import MergeParams

    merger = Merger(MergeParams.model_validate({"noise": MERGE_NOISE}))
    scans = spectra()
    return scans, [merger.add(s).to_json() for s in scans]


def test_each_scans_noise_in_the_merge_is_on_the_merges_scale(merges):
    scans, found = merges
    last = found[-1]
    own = [s["epsilon_k"] for s in last["scans"]]
    assert own == pytest.approx([larch_noise(s, 3) for s in scans], rel=1e-6)
    # not the scans' own noise at kweight 2, which xas.normalize reports for each file
    assert own != pytest.approx([larch_noise(s, 2) for s in scans], rel=0.05)
    assert last["settings"]["noise"]["kweight"] == 3
    assert last["noise_by_merge"] == "noise.kweight 3, not 2"


def test_the_agent_decides_on_one_scale_and_says_which(merges):
    from asapo_pipelines_xas.agent import ConvergenceAgent
    from asapo_pipelines_xas.params import ConvergenceParams

    _, found = merges
    agent = ConvergenceAgent(ConvergenceParams.model_validate({"target_noise": 1.2e-4}))
    decision = [agent.decide(m) for m in found][-1]
    assert decision["metrics"]["noise_by_merge"] == "noise.kweight 3, not 2"
    assert (
        "noise of the merge and of each scan measured with xas.merge's own settings, not the "
        "scans' (noise.kweight 3, not 2)" in decision["reason"]
    )
    # the merge is compared with scans measured alike: never noisier than the best of them
    best = min(s["epsilon_k"] for s in found[-1]["scans"])
    assert found[-1]["values"]["epsilon_k"] < best


def test_a_merge_with_the_scans_own_settings_reports_their_own_noise():
    from asapo_pipelines_xas.merge import Merger

    merger = Merger()
    scans = spectra()
    last = [merger.add(s).to_json() for s in scans][-1]
    assert [s["epsilon_k"] for s in last["scans"]] == [s.values["epsilon_k"] for s in scans]
    assert "noise_by_merge" not in last
