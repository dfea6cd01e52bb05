"""The agent stops "below the noise floor" only when the target is below it by more than the
floor's error says it could be: the same one-sided Student t, at `floor_confidence`, that decides
whether a floor is there at all. A target within the error of the floor (a beamline scientist's
third scan, a near-copy of the first, made the fit claim a floor equal to the target) is not out
of reach: the agent goes on as for a floor it does not use, and says why.

Real P65 scans, and a copy of one with new noise on It written in the same file format (as the
tester's mknoisy.py does), normalised and merged by the plugin with xraylarch at test time; the
floor and its error come from numpy's own least squares of the same points. No noise value is
written down here."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import t as student_t
from xas_agent_procs import merges_of
from xas_testdata import DATA, P65_SCANS, p65_variant

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams

#: the column of It in the P65 files (as the tester's mknoisy.py counts them)


def three_merges(directory: Path) -> list[dict[str, Any]]:
    for name in P65_SCANS:
        shutil.copy(DATA / name, directory / name)
    third = p65_variant(
        P65_SCANS[0], directory / "20K_GOE_Fe_K_240.00003.xdi", seed=300, noise=1e-5
    )
    return merges_of([*(directory / name for name in P65_SCANS), third])


def points_of(merges: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    last = merges[-1]
    singles = [s["epsilon_k"] for s in last["scans"] if s["accepted"]]
    n = [1.0] * len(singles) + [float(m["n_merged"]) for m in merges[1:]]
    eps = [*singles, *(m["values"]["epsilon_k"] for m in merges[1:])]
    return 1.0 / np.array(n), np.array(eps) ** 2


def test_a_target_within_the_floors_error_is_not_below_it(tmp_path):
    merges = three_merges(tmp_path)
    assert [m["n_merged"] for m in merges] == [1, 2, 3]
    x, y = points_of(merges)
    (a2, b2), cov = np.polyfit(x, y, 1, cov=True)
    assert a2 > 0, "these scans do not average down at all"
    assert b2 > 0, "these scans show no floor at all"
    sigma = math.sqrt(cov[1, 1])
    confidence = ConvergenceParams(target_noise=1.0).floor_confidence
    t = student_t.ppf(confidence, len(x) - 2)
    assert b2 > t * sigma, "the floor of these scans is not significant: nothing to test"

    # just below the floor, by half what the test asks for: the floor may be below the target
    close = math.sqrt(b2 - 0.5 * t * sigma)
    agent = ConvergenceAgent(ConvergenceParams(target_noise=close, max_scans=20))
    decision = [agent.decide(m) for m in merges][-1]
    assert decision["action"] == "more_scans", decision["reason"]
    assert decision["arguments"]["scans"] > 0
    assert decision["item"] is not None
    assert decision["metrics"]["uncertain"] is True
    assert decision["metrics"]["noise_model"]["floor_used"] is False
    assert "is within its error, not significantly below it" in decision["reason"]
    assert "falling as 1/sqrt(N) (no floor)" in decision["reason"]

    # below it by more than the test asks for (b² - target² > t sigma): the agent stops, and
    # the two numbers it compares differ as printed
    far = math.sqrt((b2 - t * sigma) / 2)
    agent = ConvergenceAgent(ConvergenceParams(target_noise=far, max_scans=20))
    decision = [agent.decide(m) for m in merges][-1]
    assert decision["action"] == "stop", decision["reason"]
    assert decision["reason"].startswith("stop: target below the noise floor")
    assert decision["metrics"]["noise_model"]["floor_used"] is True
    compared = r"the target (\S+) is significantly below the floor (\S+) ±"
    said = re.search(compared, decision["reason"])
    assert said, decision["reason"]
    assert float(said.group(1)) < float(said.group(2))


def test_a_target_just_above_the_floor_is_not_out_of_reach_within_its_error(tmp_path):
    """Above the floor, the fit's N_t exceeds max_scans when the target is close to it: a stop
    then says the target is out of reach only when the noise predicted at max_scans is above
    the target by more than its error (the same test)."""
    merges = three_merges(tmp_path)
    x, y = points_of(merges)
    (a2, b2), cov = np.polyfit(x, y, 1, cov=True)
    params = ConvergenceParams(target_noise=1.0, max_scans=20)
    t = student_t.ppf(params.floor_confidence, len(x) - 2)
    m = params.max_scans
    # twice max_scans with the fitted floor: more than the maximum, by a margin at max_scans
    # (a²/2M) within the error of a²/M + b²
    target = math.sqrt(b2 + a2 / (2 * m))
    sigma_m = math.sqrt(cov[0, 0] / m**2 + cov[1, 1] + 2 * cov[0, 1] / m)
    assert b2 > t * math.sqrt(cov[1, 1]), "the floor of these scans is not significant"
    assert a2 / (2 * m) < t * sigma_m, "the target is far enough from the floor: nothing to test"

    agent = ConvergenceAgent(params.model_copy(update={"target_noise": target}))
    decision = [agent.decide(m) for m in merges][-1]
    assert decision["action"] == "more_scans", decision["reason"]
    assert decision["arguments"]["scans"] > 0
    assert decision["metrics"]["noise_model"]["floor_used"] is False
    assert decision["metrics"]["uncertain"] is True
    assert "is not significantly above the target" in decision["reason"]
