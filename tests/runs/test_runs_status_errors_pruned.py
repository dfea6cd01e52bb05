"""`pipeline status FILE` after `pipeline prune --run r1`, when no executor knows the pipeline's
tasks (the counters alone, as for workers a scheduler or a person started): the error stream is
the pipeline's, shared by its runs, so the prune leaves r1's records in it. They used to count
in "N message(s) on the error streams", while `pipeline tail FILE errors` no longer shows them;
now they are left out of the count, and the line and the JSON say how many were. Real
`pipeline` commands, real workers, the embedded store.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runs_helpers import ROOT

from helpers import run_pipeline

FILE = "scans.pipeline.yaml"
SCANS = """\
pipeline: scans
units:
  read: {unit: xas.scan-files, params: {directory: data/, pattern: "*.xdi"},
         outputs: {scans: scans}}
  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: scans}}
"""
PRUNED = "r1"


def _ok(*args: str, cwd: Path):
    done = run_pipeline(*args, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> tuple[Path, list[dict[str, Any]]]:
    """r1 and r2 of a pipeline whose source reports a malformed scan file each run, then
    `prune --run r1`, and the local run directory gone (no executor knows the tasks); every
    error record before the prune, as `pipeline tail` printed them."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    work = tmp_path_factory.mktemp("status-errors-pruned")
    (work / "data").mkdir()
    for scan in sorted((ROOT / "examples" / "data").glob("*.xdi"))[:2]:
        shutil.copy(scan, work / "data" / scan.name)
    (work / "data" / "bad.xdi").write_text("not a scan\n")
    (work / FILE).write_text(SCANS)
    _ok("run", FILE, cwd=work)
    _ok("run", "--fresh", FILE, cwd=work)
    out = _ok("tail", FILE, "errors", "--all", "--json", cwd=work).stdout
    every = [json.loads(line) for line in out.splitlines()]
    assert any(_run(r) == PRUNED for r in every)
    _ok("prune", FILE, "--run", PRUNED, cwd=work)
    shutil.rmtree(work / ".pipeline-data" / "runs")
    return work, every


def _run(record: dict[str, Any]) -> str:
    return str(record["metadata"]["provenance"]["run"])


def _per_stream(records: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["stream"] for r in records))


def test_status_counts_no_error_record_of_a_pruned_run_and_says_how_many(pruned):
    work, every = pruned
    kept = _per_stream([r for r in every if _run(r) != PRUNED])
    gone = sum(1 for r in every if _run(r) == PRUNED)
    done = _ok("status", FILE, cwd=work)
    listing = ", ".join(f"{name} ({n})" for name, n in sorted(kept.items()))
    wanted = (
        f"{sum(kept.values())} message(s) on the error streams of: {listing} "
        f"({gone} more of pruned runs not counted)"
    )
    assert wanted in done.stdout.splitlines(), done.stdout


def test_status_json_counts_them_apart(pruned):
    work, every = pruned
    report = json.loads(_ok("status", FILE, "--json", cwd=work).stdout)
    assert report["error_messages"] == _per_stream([r for r in every if _run(r) != PRUNED])
    wanted = _per_stream([r for r in every if _run(r) == PRUNED])
    assert report["error_messages_of_pruned_runs"] == wanted
