"""When the convergence agent may believe in a noise floor: only when the data tell it from the
1/sqrt(N) law. Two repeats give three points (two scans' own noise and their merge) for a law of
two parameters: any floor fits them, so the agent must not stop "below the noise floor" on them.
A floor that every repeat shares, seen over many merges, must still stop it.

Real P65 scans, normalised and merged by the plugin with xraylarch at test time; the series with
a shared floor is built from one real scan (its own noise is what every copy shares) plus
independent noise added with numpy. No noise value is written down here."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from typing import Any

import numpy as np
import pytest
from xas_agent_procs import NORMALIZE, merges_of, noisy_copy
from xas_procs import PIPELINE, read, write_pipeline
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams


def three_point_floor(merged: dict[str, Any]) -> float:
    """The floor b of eps^2 = a^2/N + b^2 through two scans' own noise and their merge."""
    singles = [s["epsilon_k"] for s in merged["scans"]]
    eps = np.array([*singles, merged["values"]["epsilon_k"]])
    _, b2 = np.polyfit([1.0] * len(singles) + [0.5], eps**2, 1)
    assert b2 > 0, "these two repeats show no floor at all"
    return math.sqrt(b2)


def test_two_real_repeats_do_not_stop_the_agent_below_a_floor(tmp_path):
    # a target below the floor the three points give: a floor they cannot support
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, scans / name)
    target = 0.9 * three_point_floor(merges_of(sorted(scans.iterdir()))[1])
    units = {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": "scans", "pattern": "*.xdi"},
            "outputs": {"scans": "raw-scans"},
        },
        "normalize": {
            "unit": "xas.normalize",
            "params": NORMALIZE,
            "inputs": {"scans": "raw-scans"},
            "outputs": {"spectra": "spectra"},
        },
        "merge": {
            "unit": "xas.merge",
            "inputs": {"spectra": "spectra"},
            "outputs": {"merged": "m"},
        },
        "advisor": {
            "unit": "xas.convergence-agent",
            "params": {"target_noise": target, "max_scans": 20},
            "inputs": {"merged": "m"},
            "outputs": {"plans": "plans"},
        },
    }
    pipeline = write_pipeline(tmp_path, "xas-floor-support", units)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run(
        [PIPELINE, "run", str(pipeline)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    first, second = (value for _, value in read(tmp_path / "store", "plans"))
    assert first["action"] == second["action"] == "more_scans", second["reason"]
    metrics = second["arguments"]["metrics"]
    # the fit is there, quoted, and not used: the reason says why
    model = metrics["noise_model"]
    assert (model["points"], model["floor_used"]) == (3, False)
    assert model["floor"] > target
    assert "is not used: 3 points at 2 numbers of scans cannot tell a floor" in second["reason"]
    assert metrics["uncertain"] is True
    # decided as with no floor: the fewest scans at which the merged noise, falling as
    # 1/sqrt(N), is at the target
    eps, n, total = metrics["epsilon_k"], metrics["n_merged"], metrics["predicted_scans_total"]
    assert eps * math.sqrt(n / total) <= target < eps * math.sqrt(n / (total - 1))
    assert second["plan"]["kwargs"]["repeats"] == second["arguments"]["scans"] > 0


@pytest.fixture(scope="module")
def shared_floor(tmp_path_factory) -> tuple[float, list[dict[str, Any]]]:
    """The noise of P65 scan 0 itself (what its copies share) and the merges of 8 copies."""
    directory = tmp_path_factory.mktemp("copies")
    shutil.copy(DATA / P65_SCANS[0], directory / "original.xdi")
    (original,) = merges_of([directory / "original.xdi"])
    copies = [noisy_copy(directory / "copies", i, 1e-4, P65_SCANS[0]) for i in range(8)]
    return original["values"]["epsilon_k"], merges_of(copies)


def test_a_floor_every_repeat_shares_stops_the_agent_once_the_merges_show_it(shared_floor):
    floor, series = shared_floor
    target = 0.85 * floor
    agent = ConvergenceAgent(ConvergenceParams(target_noise=target, max_scans=20))
    decisions = [agent.decide(merged) for merged in series]
    # after two copies the three points claim a floor with a small error (the two copies' own
    # noise happens to agree): still not enough to stop on
    two = decisions[1]
    assert two["action"] == "more_scans", two["reason"]
    assert two["metrics"]["noise_model"]["floor"] > target
    assert two["metrics"]["noise_model"]["floor_used"] is False
    # merges of more copies show it: the agent stops below the floor, which is the noise the
    # copies share, within its fitted error
    stop = next(d for d in decisions if d["action"] == "stop")
    assert stop["reason"].startswith("stop: target below the noise floor"), stop["reason"]
    model = stop["metrics"]["noise_model"]
    assert model["floor_used"] is True
    assert stop["metrics"]["n_merged"] >= 3
    assert abs(model["floor"] - floor) < 3 * model["floor_err"]
    assert stop["item"] is None
