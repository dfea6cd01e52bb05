"""The agent's stop after one scan whose noise is already below the target reads as English.

A run of the P65 decision path on the first goethite repeat alone, with a target 5 % above that
scan's noise as xraylarch computes it here (pre_edge, autobk, estimate_noise with the units'
settings): the plan said "reached the target ... with 1 merged scans"; it says "1 merged scan",
as every other reason of the agent does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xas_procs import decision_units, pipeline_command, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS


def larch_noise(path: Path) -> float:
    from larch import Group
    from larch.xafs import autobk, estimate_noise, pre_edge

    from asapo_pipelines_xas.normalize import compute_mu
    from asapo_pipelines_xas.readers import read_scan

    scan = read_scan(path)
    group = Group(energy=scan.energy, mu=compute_mu(scan, "transmission"))
    pre_edge(group)
    autobk(group, **REFERENCE_SETTINGS["autobk"])
    kmax = float(group.k.max()) - 0.5
    estimate_noise(group.k, group.chi, group=group, **REFERENCE_SETTINGS["noise"], kmax=kmax)
    return float(group.epsilon_k)


def test_a_stop_after_one_scan_says_one_merged_scan(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    scan = Path(shutil.copy(DATA / P65_SCANS[0], tmp_path / "scans"))
    eps = larch_noise(scan)
    target = 1.05 * eps
    units = decision_units("scans", REFERENCE_SETTINGS, {"target_noise": target})
    pipeline = write_pipeline(tmp_path, "one-scan", units)
    done = pipeline_command(pipeline, "run")
    assert done.returncode == 0, done.stderr
    tail = pipeline_command(pipeline, "tail", "plans", "--json")
    assert tail.returncode == 0, tail.stderr
    (plan,) = [json.loads(line)["value"] for line in tail.stdout.splitlines()]
    assert plan["action"] == "stop", plan["reason"]
    assert plan["reason"].startswith(
        f"noise {eps:.2e} reached the target {target:.2e} with 1 merged scan"
    ), plan["reason"]
    assert "1 merged scans" not in plan["reason"]
