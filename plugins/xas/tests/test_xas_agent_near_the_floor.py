"""The agent near the noise floor, on the outside tester's `syn2` repeats (xas_noisy_repeats:
the real goethite merge plus seeded white noise, normalised and merged by the plugin with
xraylarch at test time), fed one merge at a time through the unit test harness as they would
arrive. What it must say is computed from its documented rules and numpy's least squares of the
same points (eps² = a²/N + b²); no noise value is written down here.

- A stop while repeats it asked for are still queued says so and asks to cancel them.
- A weak prediction (confidence below 0.5) commits no large batch: only the scans needed even
  with no floor.
- Once it said "stop: target below the noise floor", it keeps it while the fitted floor is still
  above the target (no stop / more / stop flip-flop).
- "Target reached" needs the fit at the current N to agree with the merge's own estimate."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from xas_noisy_repeats import fit_points, noisy_merges

from asapo_pipelines.testing.harness import UnitHarness, message

STILL_QUEUED = "asked for earlier {verb} still queued or being measured"


@pytest.fixture(scope="module")
def merges(tmp_path_factory) -> list[dict[str, Any]]:
    return noisy_merges(tmp_path_factory.mktemp("syn2"))


def agent(target: float) -> UnitHarness:
    harness = UnitHarness(
        "xas.convergence-agent", {"target_noise": target, "max_scans": 20}, pipeline="syn2"
    )
    harness.runner.context.run = {"run": "r1", "started": 1.0}
    return harness.start()


def decisions(target: float, merges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agent's suggestion on each merge, sent one at a time as the scans arrive."""
    harness = agent(target)
    for i, merged in enumerate(merges, start=1):
        harness.send(message(merged, port="merged", id=i))
    plans = harness.shutdown().values("plans")
    assert len(plans) == len(merges)
    return plans


def fitted(merges: list[dict[str, Any]]) -> tuple[float, float, np.ndarray]:
    """a², b² and their covariance of the agent's fit after the last of `merges`."""
    x, y = fit_points(merges)
    (a2, b2), cov = np.polyfit(x, y, 1, cov=True)
    return float(a2), float(b2), cov


def predicted(merges: list[dict[str, Any]]) -> float:
    """The noise the fit predicts at the last merge's N."""
    a2, b2, _ = fitted(merges)
    return math.sqrt(a2 / merges[-1]["n_merged"] + b2)


def test_a_stop_while_repeats_are_queued_asks_to_cancel_them(merges):
    """The operator raised the first suggestion's repeats (the queue's status says how many,
    as CONTRACTS.md allows); the agent then reaches the target with most of them queued."""
    eps = [m["values"]["epsilon_k"] for m in merges]
    # the first merge whose noise and fit both lie below every merge before it: a target
    # between makes the agent ask for scans until then and stop there
    stop_at = next(
        k
        for k in range(3, len(merges))
        if max(eps[k - 1], predicted(merges[:k])) < min(eps[: k - 1])
    )
    target = max(eps[stop_at - 1], predicted(merges[:stop_at])) * 1.001
    queued = len(merges) + 5
    harness = agent(target)
    try:
        first = harness.send(message(merges[0], port="merged", id=1)).values("plans")[-1]
        assert first["action"] == "more_scans", first["reason"]
        status = {
            "uid": first["uid"],
            "target": first["target"],
            "state": "approved",
            "scans": queued,
            "time": "2026-12-06T03:00:00+00:00",
        }
        harness.send(message(status, port="queue", id=100))
        for i, merged in enumerate(merges[1:stop_at], start=2):
            harness.send(message(merged, port="merged", id=i))
    finally:
        plans = harness.shutdown().values("plans")
    stop = plans[-1]
    assert stop["action"] == "stop", stop["reason"]
    # asked for `queued` when one scan was in; the queue says they are approved, not done:
    # the scans that arrived (measured otherwise) are not those, all `queued` are in flight
    in_flight = queued
    assert stop["arguments"]["metrics"]["in_flight"] == in_flight
    words = f"{in_flight} scans {STILL_QUEUED.format(verb='are')}; they are not needed: cancel them"
    assert words in stop["reason"], stop["reason"]
    assert stop["arguments"]["cancel"] == in_flight
    assert stop["arguments"]["cancel_suggestions"] == [first["uid"]]
    assert stop["plan"] is None


def test_a_weak_prediction_asks_only_for_the_scans_needed_with_no_floor(merges):
    """The tester's target 1.6e-4 on these data: the fit with the floor put N_t at 18 with
    confidence 0.34, and the agent asked for max_batch (10) scans; now it asks for those that
    falling as 1/sqrt(N) (the most favourable case) still needs, and decides again."""
    target = 1.6e-4
    plans = decisions(target, merges)
    weak = [
        (merges[i], p)
        for i, p in enumerate(plans)
        if p["action"] == "more_scans"
        and p["arguments"]["metrics"].get("noise_model", {}).get("floor_used")
        and p["confidence"] < 0.5
    ]
    assert weak, "no weak prediction with the floor on these data: nothing to test"
    for merged, plan in weak:
        n, eps = merged["n_merged"], merged["values"]["epsilon_k"]
        surely = max(n + 1, math.ceil(n * (eps / target) ** 2 - 1e-9))
        in_flight = plan["arguments"]["in_flight"]
        allowed = max(surely - n - in_flight, 0 if in_flight else 1)
        assert plan["arguments"]["scans"] <= allowed, plan["reason"]
        if plan["arguments"]["metrics"]["predicted_scans_total"] > surely:
            assert "are counted now, and the agent decides again" in plan["reason"]
    assert max(p["arguments"].get("scans", 0) for p in plans) < 10


def test_a_stop_for_the_floor_is_kept_while_the_fitted_floor_is_above_the_target(merges):
    """Target 1.2e-4 (the pipeline file's): the floor test sat on its threshold, and the agent
    said stop, 3 more, stop after 5, 6 and 7 scans."""
    target = 1.2e-4
    plans = decisions(target, merges)
    floor_stops = [
        i
        for i, p in enumerate(plans)
        if p["reason"].startswith("stop: target below the noise floor")
    ]
    assert floor_stops, [p["reason"] for p in plans]
    first = floor_stops[0]
    for i in range(first + 1, len(plans)):
        _, b2, _ = fitted(merges[: i + 1])
        plan = plans[i]
        if b2 >= target**2:
            assert plan["action"] == "stop", plan["reason"]
            said = f"as said after {merges[first]['n_merged']} merged scans"
            assert said in plan["reason"], plan["reason"]
        elif plan["action"] == "more_scans" and plans[i - 1]["action"] == "stop":
            assert plan["reason"].startswith("changed from the stop after"), plan["reason"]


def test_target_reached_needs_the_fit_at_this_n_to_agree(merges):
    """Target 1.6e-4: after 6 scans the merge's own noise was 1.556e-4 and the agent stopped
    with confidence 0.95 while its own fit predicted 1.63e-4 there."""
    target = 1.6e-4
    plans = decisions(target, merges)
    doubted = 0
    for i, plan in enumerate(plans):
        eps = merges[i]["values"]["epsilon_k"]
        if eps > target or merges[i]["n_merged"] < 3:
            continue
        prediction = predicted(merges[: i + 1])
        if prediction > target:
            doubted += 1
            assert plan["action"] == "more_scans", plan["reason"]
            assert "so the target is not taken as reached on it" in plan["reason"]
            said = re.search(r"points predicts (\S+) ± \S+ at (\d+) scans", plan["reason"])
            assert said, plan["reason"]
            assert float(said.group(1)) == pytest.approx(prediction, rel=5e-3)
        else:
            assert plan["action"] == "stop", plan["reason"]
            assert "reached the target" in plan["reason"]
    assert doubted, "no merge below the target that its fit puts above it: nothing to test"


def test_a_more_scans_after_a_stop_names_the_stop_it_changes():
    """Merges whose noise follows a floor, then falls far below it (as after a fix at the
    beamline): the floor stop is kept while the fit still puts the floor above the target, and
    the first `more_scans` after it says which stop it changes. A synthetic noise sequence (the
    merge bodies of test_xas_agent_floor): the real repeats above never fall below their floor."""
    from test_xas_agent_floor import merged_doc

    a, b, target = 2e-4, 1.5e-4, 1.2e-4
    singles = [math.hypot(a, b) * (1 + 0.01 * (-1) ** i) for i in range(12)]
    noise = [singles[0]] + [math.sqrt(a * a / n + b * b) for n in range(2, 7)]
    noise += [1.05 * a / math.sqrt(n) for n in range(7, 12)]
    harness = agent(target)
    for n, eps in enumerate(noise, start=1):
        harness.send(message(merged_doc(n, eps, singles[:n]), port="merged", id=n))
    plans = harness.shutdown().values("plans")
    actions = [p["action"] for p in plans]
    first_stop = actions.index("stop")
    assert "more_scans" in actions[first_stop:], [p["reason"] for p in plans]
    changed = actions.index("more_scans", first_stop)
    assert set(actions[first_stop:changed]) == {"stop"}
    headline = plans[first_stop]["reason"].split(". ")[0].removeprefix("stop: ")
    said = f"changed from the stop after {first_stop + 1} merged scans ({headline}): "
    assert plans[changed]["reason"].startswith(said), plans[changed]["reason"]
    # the floor stop was kept, not said again as new, while the fit's floor stayed above
    for plan in plans[first_stop + 1 : changed]:
        assert f"as said after {first_stop + 1} merged scans" in plan["reason"], plan["reason"]
