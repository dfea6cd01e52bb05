"""The viewer across real runs of the live test pipeline (`pipeline run`, the local executor, an
embedded store): one collector left open while the pipeline runs again with `--fresh` (a new
run) and again unchanged (a new session of the same run) shows what the latest run holds and
what `pipeline status` shows, never the sum of every run and session."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from viewer_support import PIPELINE_YAML, pipeline_env

from asapo_pipelines.transport import open_transport
from asapo_pipelines.viewer.collector import Collector
from asapo_pipelines.viewer.model import PipelineView

#: four scans; the average refuses the fourth: 3 processed and 1 error per run
PARAMS = {"count": 4, "delay": 0, "sample": "foil", "fail_every": 4}
SCANS = 4


class Runs:
    """The live test pipeline run to its end by `pipeline run`, as often as a test asks."""

    def __init__(self, root: Path, plugin: Path) -> None:
        import live_units

        from asapo_pipelines.testing import catalog_from_plugins
        from asapo_pipelines.viewer.model import load_view

        self.file = root / "live.pipeline.yaml"
        self.file.write_text(PIPELINE_YAML % PARAMS, encoding="utf-8")
        self.env = pipeline_env(plugin)
        self.view: PipelineView = load_view(self.file, catalog_from_plugins(live_units))

    def pipeline(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "asapo_pipelines", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
        )
        assert done.returncode == 0, f"pipeline {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def run(self, *args: str) -> None:
        self.pipeline("run", str(self.file), *args)

    def status(self) -> dict[str, dict[str, Any]]:
        """`pipeline status --json`: each unit's restarts and published counters."""
        data = json.loads(self.pipeline("status", str(self.file), "--json"))
        return {
            u["group"]: {"restarts": u["restarts"], **u["counters"]}
            for u in data["units"]
            if u.get("lifecycle", "main") == "main"
        }


@pytest.fixture
def runs(tmp_path: Path, live_plugin: Path) -> Runs:
    return Runs(tmp_path, live_plugin)


@pytest.fixture
def collector(runs: Runs):
    transport = open_transport(runs.view.transport)
    collector = Collector(runs.view, transport)
    yield collector
    collector.close()
    transport.close()


def _units_as_status_shows_them(units: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("restarts", "processed", "errors")
    return {name: {k: unit[k] for k in keys} for name, unit in units.items()}


def _status_counts(runs: Runs) -> dict[str, dict[str, Any]]:
    keys = ("restarts", "processed", "errors")
    return {name: {k: unit[k] for k in keys} for name, unit in runs.status().items()}


def _plots(sections: dict[str, Any]) -> dict[str, Any]:
    return {p["id"]: p for p in sections["plots"]}


def test_a_fresh_run_replaces_the_plots_and_counters_of_the_run_before(runs, collector):
    runs.run()
    first = collector.poll()
    assert collector.run_id == "r1"
    noise = _plots(first)["average-1"]["series"][0]["items"]
    assert len(noise) == SCANS - 1  # one point per mean; the refused scan makes none

    runs.run("--fresh")
    sections = collector.poll()
    assert collector.run_id == "r2"
    plots = _plots(sections)
    # r2's means only, not r1's and r2's
    assert len(plots["average-1"]["series"][0]["items"]) == SCANS - 1
    curves = {s["unit"]: s["items"] for s in plots["curves"]["series"]}
    assert [c["name"] for c in curves["waves"]] == [f"scan {n}" for n in range(1, SCANS + 1)]
    # the counters `pipeline status` shows for this run, not the sum of both runs
    units = _units_as_status_shows_them(sections["units"])
    assert units == _status_counts(runs)
    assert units["average"] == {"restarts": 0, "processed": SCANS - 1, "errors": 1}


def test_a_resumed_session_is_no_restart(runs, collector):
    runs.run()
    collector.poll()
    runs.run()  # unchanged: a new session of r1
    sections = collector.poll()
    assert collector.run_id == "r1"
    units = _units_as_status_shows_them(sections["units"])
    assert units == _status_counts(runs)
    assert {u["restarts"] for u in units.values()} == {0}


def test_a_run_resumed_after_a_reprocess_is_the_one_shown(runs, collector):
    runs.run()
    runs.pipeline("reprocess", str(runs.file), "--from", "r1")  # r2, ended
    collector.poll()
    assert collector.run_id == "r2"
    runs.run()  # resumes r1 (a reprocess is never resumed): r1 is the run going on
    collector.poll()
    assert collector.run_id == "r1"


@pytest.fixture
def page_transport(runs: Runs):
    """The served page's own transport (requested before `serve`: closed after it stopped)."""
    transport = open_transport(runs.view.transport)
    yield transport
    transport.close()


def test_the_error_streams_are_the_pipelines_not_the_runs(runs, collector, page_transport, serve):
    runs.run()
    runs.run("--fresh")
    sections = collector.poll()
    errors_source = f"{runs.view.name}.errors"
    row = next(s for s in sections["streams"] if s["name"] == errors_source)
    # one refused scan per run, on the one error stream of the unit
    assert row["messages"] == 2
    assert row["scan_names"] == ["average"]
    assert len(sections["errors"]) == 2
    # the latest messages, as the page asks for them
    url = serve(runs.view, page_transport) + f"api/messages?stream={errors_source}&n=5"
    with urllib.request.urlopen(url, timeout=30) as answer:
        messages = json.loads(answer.read())["messages"]
    assert [m["stream"] for m in messages] == ["average", "average"]
    assert "looks <b>odd</b>" in messages[0]["payload"]
