"""A resumed merge that cannot get back the scans it merged before says so. Its state is
rebuilt from the spectra its merged results name; when those spectra were damaged since (a
payload file deleted), or the merged results themselves moved aside (the remedy a damaged
store's sentence gives), the merge goes on from fewer scans. Before, it did so silently: the
noise jumped back up and the agent asked for more scans, with `errors 0`. Now each lost scan
is an error record of the merge (`hook: restore`), counted, and its log says why. Real
`pipeline run` sessions on the real P65 files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_xas_resume_changes import run
from xas_procs import PIPELINE, write_pipeline
from xas_testdata import DATA, P65_SCANS

UNITS: dict[str, Any] = {
    "scans": {
        "unit": "xas.scan-files",
        "params": {"directory": "data", "pattern": "*.xdi"},
        "outputs": {"scans": "raw-scans"},
    },
    "normalize": {
        "unit": "xas.normalize",
        "inputs": {"scans": "raw-scans"},
        "outputs": {"spectra": "spectra"},
    },
    "merge": {
        "unit": "xas.merge",
        "inputs": {"spectra": "spectra"},
        "outputs": {"merged": "merged"},
    },
}


def merge_status(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    units = json.loads(result.stdout)["units"]
    return next(u for u in units if u["task"] == "merge")


def restore_errors(pipeline: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [PIPELINE, "tail", str(pipeline), "errors", "--json", "--all"],
        capture_output=True,
        text=True,
        cwd=pipeline.parent,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [r for r in records if (r.get("value") or {}).get("hook") == "restore"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path


def _add(workdir: Path, name: str) -> None:
    shutil.copy(DATA / name, workdir / "data" / name)


def test_spectra_deleted_since_they_were_merged_are_errors_of_the_resumed_merge(workdir):
    for name in P65_SCANS:
        _add(workdir, name)
    pipeline = write_pipeline(workdir, "lost-spectra", UNITS)
    first = merge_status(run(pipeline))
    assert first["counters"]["processed"] == len(P65_SCANS)
    deleted = list((workdir / "store" / "lost-spectra.r1.spectra").rglob("*.seg"))
    assert deleted
    for path in deleted:
        path.unlink()
    again = merge_status(run(pipeline, "--resume"))
    assert again["counters"]["errors"] == len(P65_SCANS)
    records = restore_errors(pipeline)
    assert len(records) == len(P65_SCANS)
    assert all("its results from now on leave that input out" in str(r) for r in records)
    # said once: a third session reports nothing new
    third = merge_status(run(pipeline, "--resume"))
    assert third["counters"]["errors"] == 0
    assert len(restore_errors(pipeline)) == len(P65_SCANS)


def test_merged_results_moved_aside_make_the_resumed_merge_say_it_starts_afresh(workdir):
    _add(workdir, P65_SCANS[0])
    pipeline = write_pipeline(workdir, "merged-aside", UNITS)
    merge_status(run(pipeline))
    store = workdir / "store"
    (store / "merged-aside.r1.merged").rename(workdir / "merged-aside")
    _add(workdir, P65_SCANS[1])
    again = merge_status(run(pipeline, "--resume"))
    assert again["counters"]["errors"] == 1
    (merges,) = again["summary"]["merges"].values()
    assert merges["merged"] == 1  # what it merged now: the scan of this session only
    (record,) = restore_errors(pipeline)
    assert "processed 1 input in the run's earlier sessions, but none of its outputs" in str(record)
