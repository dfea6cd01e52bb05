"""The agent's "noise history restarted" reason counts the merges the user saw on the old
scale: after one scan merged and a resume with `--set normalize.autobk.rbkg=1.5` it said "the
noise of 0 earlier merges is on another scale" (it counted only merges of two or more scans).
The bundled P65 repeats, normalised under both settings and merged by xraylarch at test time."""

from __future__ import annotations

from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import ConvergenceParams, NormalizeParams
from asapo_pipelines_xas.readers import read_scan

RESUMED = {**REFERENCE_SETTINGS, "autobk": {**REFERENCE_SETTINGS["autobk"], "rbkg": 1.5}}
ADVISOR = {"target_noise": 1.0e-5, "max_scans": 1000}


def decisions(old_scans: int) -> list[dict]:
    """The agent's decisions on the merges after `old_scans` scans normalised with the example's
    settings and then the next scan normalised with rbkg 1.5 (a resume with --set)."""
    merger = Merger()
    sent = []
    for i, settings in enumerate([REFERENCE_SETTINGS] * old_scans + [RESUMED]):
        scan = read_scan(DATA / P65_SCANS[i % len(P65_SCANS)])
        if i >= len(P65_SCANS):
            scan.metadata["file"] = f"copy{i}.xdi"  # another scan number (a duplicate)
        sent.append(merger.add(normalize_scan(scan, NormalizeParams.model_validate(settings))))
    agent = ConvergenceAgent(ConvergenceParams(**ADVISOR))
    return [agent.decide(m.to_json()) for m in sent]


def test_after_one_merged_scan_the_restart_names_the_one_earlier_merge():
    last = decisions(1)[-1]
    assert (
        "noise history restarted: settings changed (autobk.rbkg 1.5, not 1), so the noise of "
        "the earlier merge of this group and of its scans is on another scale and is left "
        "out of the fit"
    ) in last["reason"]
    assert "0 earlier merges" not in last["reason"]
    assert last["metrics"]["noise_history_restarted"]["earlier_merges"] == 1


def test_the_restart_counts_every_earlier_merge_the_user_saw():
    plans = decisions(2)
    last = plans[-1]
    assert "so the noise of the 2 earlier merges of this group" in last["reason"]
    assert last["metrics"]["noise_history_restarted"]["earlier_merges"] == len(plans) - 1 == 2
