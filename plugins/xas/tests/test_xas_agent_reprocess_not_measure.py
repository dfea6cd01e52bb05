"""Scans left out of the merge only because they were normalised with other settings than the
newest (a `pipeline run --resume --set normalize.pre_edge.norm1=150 --set ...norm2=900`) are
measured already: the agent counts them towards the scans it needs and asks the queue only for
those still missing, saying that `pipeline reprocess` merges the others. Before, it asked the
queue (which a bridge turns into beamtime) to measure as many again.

The tester's case: the two real P65 repeats normalised as the example, then a copy of the second
with new noise on It (written in the same file format, as the tester's mknoisy.py does)
normalised with the new pre-edge range; normalised, merged and decided on by the units'
runners, noise by xraylarch at test time."""

from __future__ import annotations

import math
import shutil

import pytest
from test_xas_agent_settings_change import decide, merges_of, spectra
from xas_agent_procs import NORMALIZE
from xas_testdata import DATA, P65_SCANS, p65_variant

#: the resume of the finding
RESUMED = {**NORMALIZE, "pre_edge": {"norm1": 150, "norm2": 900}}


def test_scans_left_out_for_their_settings_are_reprocessed_not_measured_again(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, old / name)
    p65_variant(P65_SCANS[1], new / "20K_GOE_Fe_K_240.00002.xdi", seed=600, noise=1e-4)
    merges = merges_of([*spectra(old, NORMALIZE), *spectra(new, RESUMED)])
    last = merges[-1]
    assert (last["n_merged"], len(last["rejected"])) == (1, 2)
    assert all(r["superseded"] for r in last["rejected"])

    plans = decide(merges)
    plan = plans[-1]
    arguments, metrics = plan["arguments"], plan["arguments"]["metrics"]
    assert plan["action"] == "more_scans", plan["reason"]
    # measured: the merged scan, the two to reprocess and those asked for before; the queue is
    # asked only for what the estimate needs beyond them
    eps, total = metrics["epsilon_k"], metrics["predicted_scans_total"]
    assert total == max(2, math.ceil((eps / metrics["target_noise"]) ** 2 - 1e-9))
    missing = max(0, total - 1 - 2 - arguments["in_flight"])
    assert arguments["scans"] == missing, plan["reason"]
    assert arguments["reprocess"] == 2
    if missing == 0:
        assert plan["plan"] is None
    else:
        assert plan["plan"]["kwargs"]["repeats"] == missing
    # what a queue-server bridge makes of it, template or not: beamtime only for those missing
    bridge = pytest.importorskip("asapo_pipelines_bluesky.bridge")
    from asapo_pipelines_bluesky.params import QueueParams

    template = QueueParams(plan={"name": "xas_scan", "kwargs": {"repeats": "{scans}"}})
    entry = bridge.entry_from_body(plan, instance="queue", params=template)
    assert entry.scans == missing
    assert entry.state == ("noted" if missing == 0 else "pending")
    names = ", ".join(P65_SCANS)
    assert f"2 scans measured already ({names}) count towards it" in plan["reason"]
    assert "pipeline reprocess" in plan["reason"]
