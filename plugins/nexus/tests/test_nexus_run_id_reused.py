"""Two runs with one run id in one NeXus file. Run ids start again at r1 when the store is
deleted; the example run twice that way (the second with another `--set`) wrote twelve entries
of which the two runs' had the same titles (`r1: merge 2 of ...`) and the same `asapo_run`, and
the documented selection by pipeline and run returned both runs. Now the later run's writer
warns, naming both starts, its titles name its start, and every entry carries its run's start
(`asapo_run_started`), which selects one run."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import pytest
from nexus_cli import pipeline_ok as _pipeline
from nexus_cli import text as _text
from nexus_testdata import DATA, P65_SCANS
from ruamel.yaml import YAML

from asapo_pipelines_nexus.writer import is_decision

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
RUN_ATTRS = ("asapo_pipeline", "asapo_run", "asapo_run_started")


def _started(work: Path) -> float:
    """The start of the store's run r1, as `pipeline runs --json` gives it."""
    runs = json.loads(_pipeline(work, "runs", EXAMPLE.name, "--json").stdout)["runs"]
    return float(next(r["started"] for r in runs if r["id"] == "r1"))


def _utc(ts: float, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(ts))


@pytest.fixture(scope="module")
def two_r1(tmp_path_factory) -> dict[str, Any]:
    """The example run, its store deleted, and run again with another rbkg: both are r1."""
    work = tmp_path_factory.mktemp("p65-two-r1")
    (work / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, work / "data" / name)
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    _pipeline(work, "run", EXAMPLE.name)
    first = _started(work)
    shutil.rmtree(work / ".pipeline-data")
    _pipeline(work, "run", EXAMPLE.name, "--set", "normalize.autobk.rbkg=1.2")
    second = _started(work)
    log = _pipeline(work, "logs", EXAMPLE.name, "writer", "--stderr").stdout
    entries = []
    with h5py.File(work / "results" / "p65.nxs", "r", swmr=True, locking=False) as f:
        for name, entry in f.items():
            entries.append(
                {
                    "name": name,
                    "title": _text(entry["title"][()]),
                    "run": tuple(_text(entry.attrs.get(a, "")) for a in RUN_ATTRS),
                    "run_started": _text(entry["provenance/run_started"][()]),
                    "decision": is_decision(entry),
                }
            )
    return {"first": first, "second": second, "log": log, "entries": entries}


def test_the_two_runs_entries_have_distinct_titles_the_later_naming_its_start(two_r1):
    entries = two_r1["entries"]
    titles = [e["title"] for e in entries]
    assert len(set(titles)) == len(titles), titles
    pipeline = YAML(typ="safe").load(EXAMPLE.read_text())["pipeline"]  # leads every title
    later = f"{pipeline} r1 (started {_utc(two_r1['second'], '%Y-%m-%d %H:%M:%S')} UTC): "
    by_start: dict[str, list[str]] = {}
    for entry in entries:
        by_start.setdefault(entry["run_started"], []).append(entry["title"])
    assert len(by_start) == 2
    # each run wrote as many entries, among them the agent's decisions
    assert len(by_start[min(by_start)]) == len(by_start[max(by_start)])
    assert any(e["decision"] for e in entries)
    assert not all(e["decision"] for e in entries)
    earlier_titles, later_titles = (by_start[k] for k in sorted(by_start))
    # the first run wrote into a file without another r1: its titles stay short
    assert all(t.startswith(f"{pipeline} r1: ") for t in earlier_titles), earlier_titles
    assert all(t.startswith(later) for t in later_titles), later_titles
    assert f"{later}merge 2 of 20K_GOE_Fe_K_240, Fe, K, transmission (2 scans)" in later_titles


def test_the_later_runs_writer_warns_naming_both_starts(two_r1):
    warnings = [line for line in two_r1["log"].splitlines() if "another run r1" in line]
    assert len(warnings) == 1, two_r1["log"]
    first = _utc(two_r1["first"], "%Y-%m-%d %H:%M:%S")
    second = _utc(two_r1["second"], "%Y-%m-%d %H:%M:%S")
    assert " WARNING " in warnings[0]
    assert (
        f"results/p65.nxs already holds entries of another run r1 of pipeline p65-xas, "
        f"started {first} UTC; this run r1 started {second} UTC (run ids start again at r1 in "
        "a new store)"
    ) in warnings[0]


def test_pipeline_run_and_start_select_one_run(two_r1):
    """The README's selection: (asapo_pipeline, asapo_run, asapo_run_started)."""
    runs: dict[tuple[str, ...], int] = {}
    for entry in two_r1["entries"]:
        runs[entry["run"]] = runs.get(entry["run"], 0) + 1
        # the attribute is the start provenance records
        assert entry["run"][2] == entry["run_started"]
    second = _utc(two_r1["second"], "%Y-%m-%dT%H:%M:%S")
    assert len(runs) == 2, runs
    assert len(set(runs.values())) == 1, runs
    assert [run for run in runs if run[2].startswith(second)] != []
    assert {run[:2] for run in runs} == {("p65-xas", "r1")}
