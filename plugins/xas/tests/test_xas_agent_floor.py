"""The convergence agent against measured noise sequences: the bundled repeats (references by
xraylarch at test time) and synthetic ones with a known floor (eps^2 = a^2/N + b^2), #13."""

from __future__ import annotations

import math

import numpy as np
import pytest
from xas_testdata import larch_analyse

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams

GROUP = {"sample": "s", "element": "Fe", "edge": "K", "mode": "transmission"}


def merged_doc(n: int, eps: float, singles: list[float]) -> dict:
    """An `xas/merged` body as the merge unit sends it (only what the agent reads)."""
    return {
        "group": GROUP,
        "n_merged": n,
        "rejected": [],
        "latest": f"scan{n}",
        "values": {"epsilon_k": eps},
        "scans": [
            {"scan": f"scan{i + 1}", "accepted": True, "epsilon_k": e}
            for i, e in enumerate(singles[:n])
        ],
    }


def simulate(target, a, b, max_scans=30, jitter=0.005, seed=1):
    """Feed the agent merges of synthetic repeats, measuring only the scans it asked for, one by
    one; every decision is checked against its own latest estimate."""
    rng = np.random.default_rng(seed)
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target, max_scans=max_scans))
    singles = list(math.sqrt(a * a + b * b) * (1 + jitter * rng.standard_normal(max_scans)))
    pending, n, decisions = 0, 1, []
    while True:
        eps = math.sqrt(a * a / n + b * b) * (1 + jitter * rng.standard_normal())
        decision = agent.decide(merged_doc(n, eps, singles))
        decisions.append(decision)
        if decision["action"] != "more_scans":
            return decisions
        asked = decision["arguments"]["scans"]
        assert decision["arguments"]["in_flight"] == pending
        pending += asked
        predicted = decision["metrics"]["predicted_scans_total"]
        # never more repeats in total than the latest estimate
        assert n + pending <= max(predicted, n + 1), decision["reason"]
        assert pending > 0, "the agent waits for nothing"
        pending -= 1  # the next scan arrives
        n += 1


@pytest.mark.parametrize("n_target", [4, 6, 9])
def test_synthetic_reachable_target_stops_at_the_right_n(n_target):
    a, b = 1.5e-4, 0.8e-4

    def eps(n):
        return math.sqrt(a * a / n + b * b)

    # between the noise of n_target - 1 and n_target scans: reached at n_target, not before
    target = math.sqrt(eps(n_target) * eps(n_target - 1))
    decisions = simulate(target, a, b, jitter=0.001)
    last = decisions[-1]
    assert last["action"] == "stop"
    assert "reached the target" in last["reason"]
    assert last["metrics"]["n_merged"] == n_target
    # the first prediction (no floor yet) is marked uncertain and says so in its reason
    assert decisions[0]["metrics"]["uncertain"] is True
    assert "uncertain" in decisions[0]["reason"]
    # from the second merge on there is a fit (two scans' own noise and one merge of two), and
    # the last one finds the true floor within three of its standard errors
    assert decisions[1]["metrics"]["noise_model"]["points"] == 3
    model = decisions[-1]["metrics"]["noise_model"]
    assert abs(model["floor"] - b) < 3 * model["floor_err"]


@pytest.mark.parametrize("fraction", [0.9, 0.98])
def test_synthetic_target_below_the_floor_says_so_within_two_suggestions(fraction):
    a, b = 1.5e-4, 1.1e-4
    decisions = simulate(fraction * b, a, b, max_scans=20, jitter=0.002)
    # the fit is possible at the second merge (two scans' own noise + one merge of two)
    first_fit = next(i for i, d in enumerate(decisions) if "noise_model" in d["metrics"])
    assert first_fit == 1
    last = decisions[-1]
    assert len(decisions) - 1 - first_fit <= 1  # the first or second suggestion with a fit
    assert last["action"] == "stop"
    assert last["reason"].startswith("stop: target below the noise floor")
    model = last["metrics"]["noise_model"]
    assert model["floor"] > fraction * b
    assert model["floor_err"] > 0
    best = last["metrics"]["best_reachable_noise"]
    assert best == pytest.approx(math.sqrt(a * a / 20 + b * b), rel=0.05)
    assert f"{best:.2e}" in last["reason"]


def _larch_noise_sequence(p65_scans):
    """epsilon_k of each bundled repeat and of their merge, by xraylarch directly (the units'
    default settings: larch's defaults, noise window kmax = max(k) - 0.5)."""
    from larch import Group
    from larch.io import merge_groups

    from asapo_pipelines_xas.normalize import compute_mu

    def noise(group):
        return float(larch_analyse(group).epsilon_k)

    groups = [Group(energy=s.energy, mu=compute_mu(s, "transmission")) for s in p65_scans]
    singles = [noise(g) for g in groups]
    return singles, noise(merge_groups(groups))


@pytest.fixture(scope="module")
def real_merges(p65_scans):
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan

    merger = Merger()
    return [merger.add(normalize_scan(s)).to_json() for s in p65_scans]


def test_real_sequence_of_two_scans_claims_no_floor_and_falls_as_one_over_root_n(
    p65_scans, real_merges
):
    """Two repeats give noise at N = 1 and 2 only, which any a and b fit exactly: the floor
    the fit finds is reported, not used (a target below it stopped the agent before), and the
    agent predicts as for noise falling as 1/sqrt(N)."""
    singles, merged = _larch_noise_sequence(p65_scans)
    x = np.array([1.0, 1.0, 0.5])
    a2, b2 = np.polyfit(x, np.array([*singles, merged]) ** 2, 1)
    assert b2 > 0  # the 3-point fit does find a floor
    target = math.sqrt(a2 / 4.5 + b2)  # reached after 4.5 scans if that floor were real
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target))
    first = agent.decide(real_merges[0])
    assert first["action"] == "more_scans"
    assert first["metrics"]["uncertain"] is True
    second = agent.decide(real_merges[1])
    assert second["action"] == "more_scans"
    model = second["metrics"]["noise_model"]
    assert model["floor"] == pytest.approx(math.sqrt(b2), rel=0.1)
    assert model["floor_used"] is False
    assert "is not used" in second["reason"]
    eps = second["metrics"]["epsilon_k"]
    assert eps == pytest.approx(merged, rel=0.1)  # the merge unit against larch
    falling = max(3, math.ceil((eps * math.sqrt(2) / target) ** 2 - 1e-9))
    assert second["metrics"]["predicted_scans_total"] == falling
    assert second["metrics"]["uncertain"] is True


def test_repeats_in_flight_are_not_asked_again_and_the_queue_releases_them():
    a, b = 2e-4, 0.5e-4
    singles = [math.sqrt(a * a + b * b)] * 10
    agent = ConvergenceAgent(ConvergenceParams(target_noise=0.8e-4))
    first = agent.decide(merged_doc(1, singles[0], singles))
    asked = first["arguments"]["scans"]
    assert asked >= 3
    assert " after 1 merged scan, target " in first["reason"]  # read by people: one scan
    # the same merge again (a redelivery): nothing more is asked, the reason says why
    again = agent.decide(merged_doc(1, singles[0], singles))
    assert again["arguments"] == {"scans": 0, "in_flight": asked}
    assert again["item"] is None
    assert f"{asked} scans asked for earlier have not arrived yet" in again["reason"]
    # the queue says the operator is running it: still in flight
    assert agent.update_queue({"uid": first["uid"], "state": "running", "scans": asked})
    assert agent.in_flight(GROUP, 1) == asked
    # rejected: no longer in flight, so the next merge asks again
    assert agent.update_queue({"uid": first["uid"], "state": "rejected", "scans": asked})
    assert agent.in_flight(GROUP, 1) == 0
    assert agent.decide(merged_doc(1, singles[0], singles))["arguments"]["scans"] == asked
    # statuses of other agents' suggestions are ignored
    assert not agent.update_queue({"uid": "not-ours", "state": "rejected", "scans": 1})


def test_the_unit_reads_queue_status_from_its_optional_port(run_unit, unit_message):
    a, b = 2e-4, 0.5e-4
    singles = [math.sqrt(a * a + b * b)] * 10
    doc = merged_doc(1, singles[0], singles)
    params = {"target_noise": 0.8e-4}
    first = run_unit("xas.convergence-agent", [unit_message(doc, port="merged")], params=params)
    (suggestion,) = first.values("plans")
    assert suggestion["arguments"]["scans"] >= 3
    assert suggestion["plan"]["kwargs"]["repeats"] == suggestion["arguments"]["scans"]
    # one unit instance: suggestion, the queue rejects it, the same merge asks again
    from asapo_pipelines.testing.harness import UnitHarness

    harness = UnitHarness("xas.convergence-agent", params)
    try:
        out = harness.send(unit_message(doc, port="merged"))
        uid = out.values("plans")[0]["uid"]
        out = harness.send(unit_message(doc, port="merged"))
        assert out.values("plans")[-1]["arguments"]["scans"] == 0  # all in flight
        status = {
            "uid": uid,
            "target": "s/Fe/K/transmission",
            "state": "rejected",
            "scans": 4,
            "reason": "no beam",
            "time": "2026-11-30T16:00:00+00:00",
        }
        harness.send(unit_message(status, port="queue"))
        out = harness.send(unit_message(doc, port="merged"))
        assert out.values("plans")[-1]["arguments"]["in_flight"] == 0
        assert out.values("plans")[-1]["arguments"]["scans"] >= 3
        assert not out.errors
    finally:
        harness.shutdown()


def test_suggestion_uids_are_the_same_on_a_replay_and_differ_across_runs(unit_message):
    """A suggestion's uid is made from what was decided on, so that a restarted agent sends a
    replayed decision under the uid the queue knows; the same merges in another run (or another
    agent) must still make other uids, or a shared queue server inbox takes the second run's
    suggestion for one it has."""
    from asapo_pipelines.testing.harness import UnitHarness

    a, b = 2e-4, 0.5e-4
    singles = [math.sqrt(a * a + b * b)] * 10
    doc = merged_doc(1, singles[0], singles)

    def uid(pipeline: str, run: dict) -> str:
        harness = UnitHarness("xas.convergence-agent", {"target_noise": 0.8e-4}, pipeline=pipeline)
        harness.runner.context.run = run
        try:
            return harness.send(unit_message(doc, port="merged")).values("plans")[0]["uid"]
        finally:
            harness.shutdown()

    r1 = {"run": "r1", "started": "2026-12-02T17:00:00+00:00"}
    assert uid("p65", r1) == uid("p65", dict(r1))
    assert uid("p65", r1) != uid("p65", {**r1, "run": "r2"})
    assert uid("p65", r1) != uid("p65", {**r1, "started": "2026-12-02T18:00:00+00:00"})
    assert uid("p65", r1) != uid("other", r1)
