"""`pipeline tail` and `pipeline prune --run` against what the store holds afterwards: real
`pipeline` commands, real workers, the embedded store.

- `tail FILE errors --run RUN` prints that run's error records only (without --run, those of
  every run, each line naming its run);
- tailing a stream the run never wrote prints nothing and leaves the store as it was (a read
  that created the data source made `pipeline streams` list it, with no streams);
- `prune --run RUN` takes the run's data sources out of the listing, and a later `--fresh` run
  still gets a number of its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from runs_helpers import ROOT

from asapo_pipelines.worker.naming import data_source_for

from helpers import core_pipeline, run_pipeline


def _ok(*args: str, cwd: Path) -> str:
    done = run_pipeline(*args, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _listed(cwd: Path, file: str) -> dict[str, int]:
    """data source -> how many streams `pipeline streams` lists in it."""
    out = json.loads(_ok("streams", file, "--json", cwd=cwd))
    return {s["name"]: len(s["streams"]) for s in out["data_sources"]}


# -- errors --run ----------------------------------------------------------------------------
SCANS = """\
pipeline: scans
units:
  read: {unit: xas.scan-files, params: {directory: data/, pattern: "*.xdi"},
         outputs: {scans: scans}}
  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: scans}}
"""


def _records(cwd: Path, *extra: str) -> list[dict[str, Any]]:
    out = _ok("tail", "scans.pipeline.yaml", *extra, "--json", cwd=cwd)
    return [json.loads(line) for line in out.splitlines()]


def _run(record: dict[str, Any]) -> str:
    return str(record["metadata"]["provenance"]["run"])


@pytest.fixture(scope="module")
def two_runs_with_errors(tmp_path_factory) -> Path:
    """r1 and a --fresh r2 of a pipeline whose source reports a malformed scan file."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    work = tmp_path_factory.mktemp("tail-errors")
    (work / "data").mkdir()
    for scan in sorted((ROOT / "examples" / "data").glob("*.xdi"))[:2]:
        shutil.copy(scan, work / "data" / scan.name)
    (work / "data" / "bad.xdi").write_text("not a scan\n")
    (work / "scans.pipeline.yaml").write_text(SCANS)
    _ok("run", "scans.pipeline.yaml", cwd=work)
    _ok("run", "--fresh", "scans.pipeline.yaml", cwd=work)
    return work


def test_tail_errors_run_prints_that_runs_records_only(two_runs_with_errors: Path):
    every = _records(two_runs_with_errors, "errors", "--all")
    assert {_run(r) for r in every} == {"r1", "r2"}, every
    for asked, run in (("r2", "r2"), ("1", "r1")):
        shown = _records(two_runs_with_errors, "errors", "--all", "--run", asked)
        assert shown == [r for r in every if _run(r) == run], shown
        one_unit = _records(two_runs_with_errors, "errors.read", "--all", "--run", asked)
        assert one_unit == [r for r in shown if r["stream"] == "read"], one_unit


def test_tail_errors_last_counts_the_runs_records(two_runs_with_errors: Path):
    every = _records(two_runs_with_errors, "errors", "--all")
    of_r1 = [r for r in every if _run(r) == "r1"]
    # r2's record is newer: the newest record of r1 is printed, not nothing
    assert _records(two_runs_with_errors, "errors", "--run", "r1", "-n", "1") == of_r1[-1:]


def test_tail_errors_lines_name_their_run(two_runs_with_errors: Path):
    lines = _ok("tail", "scans.pipeline.yaml", "errors", cwd=two_runs_with_errors).splitlines()
    assert len(lines) == 2, lines
    assert "scans/read (r1): cannot read scan file bad.xdi" in lines[0], lines
    assert "scans/read (r2): cannot read scan file bad.xdi" in lines[1], lines


# -- a read never writes ---------------------------------------------------------------------
def test_tail_of_a_stream_never_written_leaves_the_store_as_it_was(tmp_path: Path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a\n")
    path = core_pipeline(tmp_path, files=files, out=tmp_path / "out.jsonl", name="quiet")
    doc = json.loads(path.read_text())
    doc["streams"] = {"unused": {}}  # declared, written by no unit
    path.write_text(json.dumps(doc))
    _ok("run", path.name, cwd=tmp_path)
    before = _listed(tmp_path, path.name)
    done = run_pipeline("tail", path.name, "unused", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "run r1 (complete) holds no messages in stream unused" in done.stderr, done.stderr
    assert _listed(tmp_path, path.name) == before
    assert data_source_for("unused", "quiet", "r1") not in before


# -- prune --run -----------------------------------------------------------------------------
def test_prune_run_takes_its_data_sources_out_of_the_listing(tmp_path: Path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_text("a\n")
    path = core_pipeline(tmp_path, files=files, out=tmp_path / "out.jsonl", name="pruned")
    _ok("run", path.name, cwd=tmp_path)
    _ok("run", "--fresh", path.name, cwd=tmp_path)
    of_run = {r: data_source_for("", "pruned", r) for r in ("r1", "r2")}
    before = _listed(tmp_path, path.name)
    kept = {s: n for s, n in before.items() if not s.startswith(of_run["r2"])}
    assert len(kept) < len(before), before  # r2 wrote data sources of its own
    _ok("prune", path.name, "--run", "r2", cwd=tmp_path)
    assert _listed(tmp_path, path.name) == {**kept, "pruned.runs": kept["pruned.runs"] - 1}
    # the pruned run's number is not given out again
    _ok("run", "--fresh", path.name, cwd=tmp_path)
    runs = json.loads(_ok("runs", path.name, "--json", cwd=tmp_path))["runs"]
    assert [r["id"] for r in runs] == ["r1", "r3"], runs
    listed = _listed(tmp_path, path.name)
    assert any(s.startswith(data_source_for("", "pruned", "r3")) for s in listed), listed
    assert not any(s.startswith(of_run["r2"]) for s in listed), listed
