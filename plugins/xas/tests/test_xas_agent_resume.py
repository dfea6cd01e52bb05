"""The convergence agent across a stop and a resume, with real `pipeline run` processes: the
agent rebuilds its noise history and the scans it asked for from the merges it decided on, so
a resumed run decides exactly as an uninterrupted one on the same files; and with the noise
estimate off it says once that it cannot judge convergence, and asks for nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from xas_procs import PIPELINE, decision_units, read, write_pipeline
from xas_testdata import DATA, P65_SCANS

#: the P65 example's processing and agent (examples/p65-xas.pipeline.yaml, without the writer),
#: with a target the agent still asks repeats for after eight scans
NORMALIZE = {
    "mode": "transmission",
    "autobk": {"rbkg": 1, "kweight": 2},
    "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
}
ADVISOR = {"target_noise": 1.5e-4, "max_scans": 20}
#: the counter columns of the P65 files (VFC01..VFC04)
COUNTERS = slice(10, 14)


def units(normalize: dict[str, Any] = NORMALIZE) -> dict[str, Any]:
    return decision_units("scans", normalize, ADVISOR)


def write_repeat(directory: Path, index: int) -> None:
    """Repeat `index`: a P65 scan with its counts changed by 0.02 % (a different measurement)."""
    source = (DATA / P65_SCANS[index % len(P65_SCANS)]).read_text().splitlines()
    rng = np.random.default_rng(index)
    lines = []
    for line in source:
        if line.startswith("#") or not line.strip():
            lines.append(line)
            continue
        cells = line.split()
        for i in range(COUNTERS.start, COUNTERS.stop):
            cells[i] = repr(float(cells[i]) * (1 + 2e-4 * rng.standard_normal()))
        lines.append(" ".join(cells))
    directory.mkdir(exist_ok=True)
    (directory / f"20K_GOE_Fe_K_240.{index:05d}.xdi").write_text("\n".join(lines) + "\n")


def run(pipeline: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(pipeline.parent / "cache")
    done = subprocess.run(
        [PIPELINE, "run", str(pipeline)],
        capture_output=True,
        text=True,
        env=env,
        cwd=pipeline.parent,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def decision(suggestion: dict[str, Any]) -> dict[str, Any]:
    """What must not change across a resume: the action, the scans asked for, the fit."""
    arguments = suggestion["arguments"]
    metrics = arguments["metrics"]
    return {
        "action": suggestion["action"],
        "scans": arguments.get("scans"),
        "in_flight": arguments.get("in_flight"),
        "fit_points": (metrics.get("noise_model") or {}).get("points"),
        "predicted": metrics.get("predicted_scans_total"),
        "n_merged": metrics["n_merged"],
    }


def test_a_resumed_run_decides_as_an_uninterrupted_one(tmp_path):
    resumed, whole = tmp_path / "resumed", tmp_path / "whole"
    for directory in (resumed, whole):
        directory.mkdir()
        for index in range(7):
            write_repeat(directory / "scans", index)
    write_repeat(whole / "scans", 7)
    pipeline = write_pipeline(resumed, "xas-resume", units())
    first = run(pipeline)
    assert "run r1" in first.stdout
    write_repeat(resumed / "scans", 7)
    again = run(pipeline)
    assert "resuming run r1" in again.stdout, again.stdout
    run(write_pipeline(whole, "xas-resume", units()))

    after_resume = [value for _, value in read(resumed / "store", "plans")]
    uninterrupted = [value for _, value in read(whole / "store", "plans")]
    assert decision(after_resume[-1])["n_merged"] == 8
    # the scans asked for earlier and not arrived yet are part of the decision
    assert decision(uninterrupted[-1])["in_flight"] > 0, uninterrupted[-1]["reason"]
    assert decision(after_resume[-1]) == decision(uninterrupted[-1]), (
        after_resume[-1]["reason"] + "\n" + uninterrupted[-1]["reason"]
    )


def test_with_the_noise_estimate_off_the_agent_says_so_once_and_asks_for_nothing(tmp_path):
    for index in range(3):
        write_repeat(tmp_path / "scans", index)
    pipeline = write_pipeline(
        tmp_path, "xas-no-noise", units({**NORMALIZE, "noise": {"enabled": False}})
    )
    done = run(pipeline)
    # the merges after the first get no suggestion, and no failure either
    assert "process failed" not in done.stdout + done.stderr, done.stdout + done.stderr
    plans = [value for _, value in read(tmp_path / "store", "plans")]
    assert len(plans) == 1, [p["reason"] for p in plans]
    (said,) = plans
    assert said["action"] == "change_parameters"
    assert said["plan"] is None
    assert "cannot judge convergence without noise estimates" in said["reason"]
