"""`pipeline tail FILE errors` and `pipeline status FILE` after `pipeline prune --run r1`: the
error stream is the pipeline's, shared by all its runs, so the prune cannot drop r1's records
from it. They used to print still, naming a run `pipeline runs` no longer lists, and to count in
status's "N message(s) on the error streams"; tail now leaves them out and says on stderr, in
one line, how many and why, and status (the counters alone, when no executor knows the tasks)
counts them apart. Real `pipeline` commands, real workers, the embedded store.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from runs_helpers import ROOT

from asapo_pipelines.runs import RunStore
from asapo_pipelines.transport import open_transport

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


def _records(cwd: Path, *extra: str) -> list[dict[str, Any]]:
    out = _ok("tail", FILE, *extra, "--json", cwd=cwd).stdout
    return [json.loads(line) for line in out.splitlines()]


def _run(record: dict[str, Any]) -> str:
    return str(record["metadata"]["provenance"]["run"])


def _held(cwd: Path, run: str) -> int:
    """How many error records of `run` the store holds, as the run records count them."""
    spec = {"embedded": {"path": str(cwd / ".pipeline-data"), "create": False}}
    with open_transport(spec) as transport:
        return sum((RunStore(transport, "scans").errors_held(run) or {}).values())


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> tuple[Path, list[dict[str, Any]], int]:
    """r1, r2 and r3 of a pipeline whose source reports a malformed scan file each run, then
    `prune --run r1`; every error record before the prune, and how many were r1's."""
    pytest.importorskip("asapo_pipelines_xas", reason="needs the XAS plugin (plugins/xas)")
    work = tmp_path_factory.mktemp("tail-errors-pruned")
    (work / "data").mkdir()
    for scan in sorted((ROOT / "examples" / "data").glob("*.xdi"))[:2]:
        shutil.copy(scan, work / "data" / scan.name)
    (work / "data" / "bad.xdi").write_text("not a scan\n")
    (work / FILE).write_text(SCANS)
    _ok("run", FILE, cwd=work)
    for _ in range(2):
        _ok("run", "--fresh", FILE, cwd=work)
    before = _ok("tail", FILE, "errors", "--all", "--json", cwd=work)
    assert before.stderr == "", before.stderr  # nothing pruned yet: nothing to say
    every = [json.loads(line) for line in before.stdout.splitlines()]
    of_pruned = _held(work, PRUNED)
    assert of_pruned > 0
    _ok("prune", FILE, "--run", PRUNED, cwd=work)
    # no executor knows the tasks now (as for workers a scheduler or a person started): status
    # shows the counters alone; tail reads the transport either way
    shutil.rmtree(work / ".pipeline-data" / "runs")
    return work, every, of_pruned


def _note(n: int) -> str:
    return f"{n} error record{'s' if n != 1 else ''} of pruned runs not shown"


def test_tail_errors_leaves_out_the_records_of_a_pruned_run_and_says_how_many(pruned):
    work, every, of_pruned = pruned
    done = _ok("tail", FILE, "errors", "--all", "--json", cwd=work)
    shown = [json.loads(line) for line in done.stdout.splitlines()]
    assert shown == [r for r in every if _run(r) != PRUNED], shown
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(_note(of_pruned)), line
    listed = json.loads(_ok("runs", FILE, "--json", cwd=work).stdout)["runs"]
    assert PRUNED not in {r["id"] for r in listed}


def test_tail_errors_in_lines_names_no_pruned_run(pruned):
    work, every, of_pruned = pruned
    done = _ok("tail", FILE, "errors", cwd=work)
    assert f"({PRUNED})" not in done.stdout, done.stdout
    kept = {_run(r) for r in every} - {PRUNED}
    assert all(f"({run})" in done.stdout for run in kept), done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(_note(of_pruned)), line


def test_tail_of_one_units_errors_leaves_them_out_too(pruned):
    work, every, _ = pruned
    done = _ok("tail", FILE, "errors.read", "--all", "--json", cwd=work)
    shown = [json.loads(line) for line in done.stdout.splitlines()]
    wanted = [r for r in every if r["stream"] == "read" and _run(r) != PRUNED]
    assert shown == wanted, shown
    n = sum(1 for r in every if r["stream"] == "read" and _run(r) == PRUNED)
    assert done.stderr.strip().startswith(_note(n)), done.stderr


def test_tail_errors_of_a_run_still_there_says_nothing_of_pruned_ones(pruned):
    work, every, _ = pruned
    done = _ok("tail", FILE, "errors", "--all", "--json", "--run", "r2", cwd=work)
    assert done.stderr == "", done.stderr
    shown = [json.loads(line) for line in done.stdout.splitlines()]
    assert shown == [r for r in every if _run(r) == "r2"], shown


def _per_stream(records: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["stream"] for r in records))


def test_status_counts_no_error_record_of_a_pruned_run_and_says_how_many(pruned):
    work, every, _ = pruned
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
    work, every, _ = pruned
    report = json.loads(_ok("status", FILE, "--json", cwd=work).stdout)
    assert report["error_messages"] == _per_stream([r for r in every if _run(r) != PRUNED])
    wanted = _per_stream([r for r in every if _run(r) == PRUNED])
    assert report["error_messages_of_pruned_runs"] == wanted
