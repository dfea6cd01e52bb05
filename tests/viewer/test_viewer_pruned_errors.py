"""The viewer's error list after `pipeline prune --run r1`: the error stream is the pipeline's,
shared by its runs, so the prune leaves r1's records in it. The list used to show them, naming
nothing `pipeline runs` still lists; it now leaves them out as `pipeline tail FILE errors` does,
for a viewer started after the prune and for one that was open across it. The live test
pipeline run by `pipeline run` (the local executor, an embedded store), the page in chromium.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from viewer_support import PIPELINE_YAML, pipeline_env

from asapo_pipelines.transport import open_transport
from asapo_pipelines.viewer.collector import Collector
from asapo_pipelines.worker.dedupe import provenance_run

#: four scans; the average refuses the fourth: one error record per run
PARAMS = {"count": 4, "delay": 0, "sample": "foil", "fail_every": 4}
PRUNED = "r1"


class Runs:
    """The live test pipeline, run to its end by real `pipeline` commands."""

    def __init__(self, root: Path, plugin: Path) -> None:
        import live_units

        from asapo_pipelines.testing import catalog_from_plugins
        from asapo_pipelines.viewer.model import load_view

        self.file = root / "live.pipeline.yaml"
        self.file.write_text(PIPELINE_YAML % PARAMS, encoding="utf-8")
        self.env = pipeline_env(plugin)
        self.view = load_view(self.file, catalog_from_plugins(live_units))

    def pipeline(self, *args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "asapo_pipelines", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=180,
        )
        assert done.returncode == 0, f"pipeline {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.fixture
def runs(tmp_path: Path, live_plugin: Path) -> Runs:
    runs = Runs(tmp_path, live_plugin)
    runs.pipeline("run", str(runs.file))
    runs.pipeline("run", "--fresh", str(runs.file))
    return runs


@pytest.fixture
def transport(runs: Runs):
    transport = open_transport(runs.view.transport)
    yield transport
    transport.close()


def _held(transport: Any, pipeline: str) -> dict[tuple[str, int], str | None]:
    """(unit's error stream, id) -> the run named in its provenance, of every error record the
    store holds, read as the transport hands them out."""
    source = f"{pipeline}.errors"
    held = {}
    with transport.consumer(source, "test-reference") as consumer:
        for info in consumer.streams():
            for mid in range(1, info.last_id + 1):
                msg = consumer.get_by_id(info.name, mid)
                held[(info.name, mid)] = provenance_run(dict(msg.metadata))
    return held


def _listed(sections: dict[str, Any]) -> list[tuple[str, int]]:
    return sorted((e["stream"], e["id"]) for e in sections["errors"])


def test_the_error_list_leaves_out_a_pruned_runs_records(runs, transport):
    opened = Collector(runs.view, transport)  # open across the prune
    try:
        held = _held(transport, runs.view.name)
        assert sorted(set(held.values())) == ["r1", "r2"]  # the stream holds both runs'
        assert _listed(opened.poll()) == sorted(held)
        runs.pipeline("prune", str(runs.file), "--run", PRUNED)
        kept = sorted(key for key, run in held.items() if run != PRUNED)
        assert _listed(opened.poll()) == kept
        fresh = Collector(runs.view, transport)
        try:
            assert _listed(fresh.poll()) == kept
        finally:
            fresh.close()
    finally:
        opened.close()


def test_the_page_counts_no_error_of_a_pruned_run(runs, transport, page, serve):
    runs.pipeline("prune", str(runs.file), "--run", PRUNED)
    kept = [key for key, run in _held(transport, runs.view.name).items() if run != PRUNED]
    page.goto(serve(runs.view, transport))
    # the list is drawn whole from one poll: once an entry shows, all of them do
    page.wait_for_selector("#errors li")
    assert page.locator("#errors li").count() == len(kept)
    assert page.locator("#error-count").text_content() == str(len(kept))
    assert page.problems == []
