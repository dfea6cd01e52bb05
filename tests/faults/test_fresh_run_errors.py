"""A source's `report_error` for a bad input in a `--fresh` run: real `pipeline` commands, real
workers, the embedded store.

The error stream is the pipeline's, written by every run, and a source looked in all of it for
what it had already reported: a fresh run counted the malformed file as a duplicate and wrote
no record of its own. Errors are de-duplicated within a run (a restarted source reports a bad
file once), never across runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import run_pipeline

# a source that reports a malformed file: xas.scan-files (the core's sources read any file)
pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")

ROOT = Path(__file__).resolve().parents[2]
FILE = "scans.pipeline.yaml"
PIPELINE = """\
pipeline: scans
units:
  read: {unit: xas.scan-files, params: {directory: data/, pattern: "*.xdi"},
         outputs: {scans: scans}}
  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: scans}}
"""


def error_records(directory: Path) -> list[tuple[str, str]]:
    """(run, key) of each record on the pipeline's error stream, oldest first."""
    tail = run_pipeline("tail", FILE, "errors", "--all", "--json", cwd=directory)
    assert tail.returncode == 0, tail.stderr
    out = []
    for line in tail.stdout.splitlines():
        provenance = json.loads(line)["metadata"]["provenance"]
        out.append((provenance["run"], provenance["key"]))
    return out


def read_counts(directory: Path) -> dict[str, dict]:
    listed = run_pipeline("runs", FILE, "--json", cwd=directory)
    assert listed.returncode == 0, listed.stderr
    return {r["id"]: r["counts"]["read"] for r in json.loads(listed.stdout)["runs"]}


def test_a_fresh_run_reports_its_own_errors_and_a_restart_does_not_repeat_them(tmp_path):
    (tmp_path / "data").mkdir()
    for scan in sorted((ROOT / "examples" / "data").glob("*.xdi"))[:2]:
        shutil.copy(scan, tmp_path / "data" / scan.name)
    (tmp_path / "data" / "bad.xdi").write_text("not a scan\n")
    (tmp_path / FILE).write_text(PIPELINE)
    for extra in ((), ("--fresh",)):
        done = run_pipeline("run", *extra, FILE, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    counts = read_counts(tmp_path)
    for run in ("r1", "r2"):
        assert (counts[run]["errors"], counts[run]["duplicates_skipped"]) == (1, 0), counts
    key = "scans/read|error|key:bad.xdi"
    assert error_records(tmp_path) == [("r1", key), ("r2", key)]
    # the source of r2 started again (as after a crash): its bad file is not reported twice
    again = run_pipeline("worker", FILE, "read", cwd=tmp_path, env={"ASAPO_PIPELINES_RUN": "r2"})
    assert again.returncode == 0, again.stderr
    assert error_records(tmp_path) == [("r1", key), ("r2", key)]
