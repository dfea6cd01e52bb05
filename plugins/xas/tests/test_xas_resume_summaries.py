"""A run split over sessions (a scan, `pipeline run` stopped, a new scan, `pipeline run`
resuming the run) says what the whole run did: `xas.normalize` and `xas.convergence-agent`
count on from the run's earlier sessions, so `pipeline reprocess`, which redoes the run in
one session, finds nothing changed. Before, the resumed session's summaries held its own
scan only, and reprocess reported "spectra 1 -> 2 (changed)" and other decisions."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from xas_procs import PIPELINE, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

UNITS: dict[str, Any] = {
    "scans": {
        "unit": "xas.scan-files",
        "params": {"directory": "scans", "pattern": "*.xdi"},
        "outputs": {"scans": "raw-scans"},
    },
    "normalize": {
        "unit": "xas.normalize",
        "params": {**REFERENCE_SETTINGS, "mode": "transmission"},
        "inputs": {"scans": "raw-scans"},
        "outputs": {"spectra": "spectra"},
    },
    "merge": {
        "unit": "xas.merge",
        "inputs": {"spectra": "spectra"},
        "outputs": {"merged": "merged"},
    },
    "advisor": {
        "unit": "xas.convergence-agent",
        "params": {"target_noise": 1.5e-4, "max_scans": 20},
        "inputs": {"merged": "merged"},
        "outputs": {"plans": "plans"},
    },
}


def pipeline(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(workdir / "cache")
    done = subprocess.run(
        [PIPELINE, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def summaries(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return {u["task"]: u["summary"] for u in json.loads(done.stdout)["units"]}


def comparison(stdout: str, instance: str) -> dict[str, str]:
    """`pipeline reprocess`'s lines for one unit: what -> "old -> new[   (changed)]"."""
    block = re.search(rf"^{instance}:\n((?:  .*\n?)*)", stdout, re.M)
    assert block is not None, stdout
    return dict(line.strip().split(": ", 1) for line in block[1].splitlines())


def test_a_run_resumed_with_a_new_scan_summarizes_the_whole_run(tmp_path):
    (tmp_path / "scans").mkdir()
    shutil.copy(DATA / P65_SCANS[0], tmp_path / "scans")
    file = str(write_pipeline(tmp_path, "xas-sessions", UNITS))
    first = summaries(pipeline(tmp_path, "run", file, "--json"))
    assert first["normalize"]["spectra"] == 1

    shutil.copy(DATA / P65_SCANS[1], tmp_path / "scans")
    resumed = pipeline(tmp_path, "run", file, "--json")
    assert "resuming run r1" in resumed.stderr + resumed.stdout
    whole = summaries(resumed)
    # the second session normalized one scan, and the run two
    assert whole["normalize"]["spectra"] == 2
    assert [s["file"] for s in whole["normalize"]["scans"]] == sorted(P65_SCANS)
    assert whole["advisor"]["suggestions"] == 2

    done = pipeline(tmp_path, "reprocess", file, "--from", "r1")
    assert "run r2 replays" in done.stdout, done.stdout
    for instance in ("normalize", "advisor"):
        rows = comparison(done.stdout, instance)
        changed = {what: row for what, row in rows.items() if row.endswith("(changed)")}
        assert changed == {}, done.stdout
    assert comparison(done.stdout, "normalize")["spectra"] == "2 -> 2"
    assert comparison(done.stdout, "advisor")["suggestions"] == "2 -> 2"
