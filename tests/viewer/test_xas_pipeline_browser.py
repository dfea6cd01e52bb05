"""The P65 XAS pipeline in the viewer, in a real chromium: real beamline scans normalised by
xraylarch, merged and judged by the xas plugin's code, each unit a `pipeline worker` process.

The units are thin adapters (xas_adapters.py) around the xas plugin's functions, installed as a
plugin distribution: the plugin's own runtime classes are tested by test_xas_browser.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import ARTIFACTS, HERE, ROOT, LivePipeline, pipeline_env
from test_browser import unit_row, wait_for
from test_xas_browser import P65_SCANS, xas_data

PIPELINE = """\
pipeline: p65-xas
transport: {embedded: {path: .pipeline-data}}
units:
  scans:
    unit: viewerxas.scans
    params: {directory: %(data)s, pattern: "*.xdi", delay: 0.8}
    outputs: {scans: raw-scans}
  normalize:
    unit: viewerxas.normalize
    params:
      mode: transmission
      autobk: {rbkg: 1, kweight: 2}
      noise: {rmin: 15, rmax: 25, kweight: 2, kmin: 2}
    inputs: {scans: raw-scans}
    outputs: {spectra: spectra}
  merge:
    unit: viewerxas.merge
    inputs: {spectra: spectra}
    outputs: {merged: merged}
  advisor:
    unit: viewerxas.agent
    params: {target_noise: 1.0e-9, max_scans: 40}
    inputs: {merged: merged}
    outputs: {plans: plans}
"""


@pytest.fixture(scope="session")
def xas_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("asapo_pipelines_xas.normalize", reason="the xas plugin is not installed")
    from asapo_pipelines.testing.distributions import PluginProject, install

    root = tmp_path_factory.mktemp("xas-adapters")
    project = PluginProject(
        "viewer-xas-adapters",
        modules={"units.py": (HERE / "xas_adapters.py").read_text(encoding="utf-8")},
        entry_points={"viewer_xas": "viewer_xas_adapters.units"},
    ).write(root / "src")
    install([project], root / "site")
    return root / "site"


class XasPipeline(LivePipeline):
    def __init__(self, root: Path, plugin: Path, scans: int) -> None:
        import xas_adapters

        from asapo_pipelines.testing import catalog_from_plugins
        from asapo_pipelines.viewer.model import load_view

        source = xas_data()
        if source is None:
            pytest.skip("the P65 test scans are not in this checkout")
        data = root / "data"
        data.mkdir()
        for i in range(scans):  # repeats of one sample, alternating the two measured scans
            shutil.copy(source / P65_SCANS[i % 2], data / f"20K_GOE_Fe_K_240.{i:05d}.xdi")
        self.file = root / "p65-xas.pipeline.yaml"
        self.file.write_text(PIPELINE % {"data": data}, encoding="utf-8")
        self.view = load_view(self.file, catalog_from_plugins(xas_adapters))
        self.env = pipeline_env(plugin)
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs = {}
        self.starts = {}
        self.viewer = None


def test_p65_xas_pipeline_in_the_viewer(page, tmp_path, xas_plugin):
    pipeline = XasPipeline(tmp_path, xas_plugin, scans=10)
    try:
        pipeline.start_all()
        page.goto(pipeline.serve())
        page.wait_for_selector("#graph svg [data-node]")
        units = page.eval_on_selector_all(
            "#graph g.unit", "nodes => nodes.map(n => n.getAttribute('data-node'))"
        )
        assert sorted(units) == ["u:advisor", "u:merge", "u:normalize", "u:scans"]

        page.evaluate("window.__sameDocument = true")
        first = wait_for(
            page,
            lambda: int(unit_row(page, "normalize").get("processed") or 0),
            "normalised scans",
            timeout=120,
        )
        wait_for(page, lambda: int(unit_row(page, "normalize")["processed"]) > first, "more scans")
        assert page.evaluate("window.__sameDocument") is True

        # each normalised scan overlaid with the newest merge, drawn from the plot hints
        wait_for(
            page,
            lambda: (
                page.locator('[data-plot="spectra"]').count() == 1
                and any(
                    name.startswith("n_merged ")
                    for name in page.locator(
                        '[data-plot="spectra"] .legendtext'
                    ).all_text_contents()
                )
                and int(page.get_attribute('[data-plot="spectra"]', "data-traces") or 0) >= 3
            ),
            "the merged spectrum over its scans",
        )
        # the noise against the number of scans merged, and the agent's decisions
        wait_for(
            page,
            lambda: page.locator('[data-plot="merge-1"] .scatterlayer .point').count() >= 2,
            "the noise plot",
        )
        wait_for(
            page,
            lambda: page.locator('[data-plot="advisor-0"] .scatterlayer .point').count() >= 2,
            "the decisions timeline",
        )
        # a unit killed on purpose shows as restarting, then counts its restart
        pipeline.kill("merge")
        wait_for(page, lambda: unit_row(page, "merge")["state"] == "restarting", "restarting")
        pipeline.start("merge")
        wait_for(
            page,
            lambda: (
                unit_row(page, "merge")["restarts"] == "1"
                and unit_row(page, "merge")["state"] in ("running", "finished")
            ),
            "merge back after one restart",
            timeout=120,
        )
        wait_for(
            page,
            lambda: page.locator('[data-plot="merge-1"] .scatterlayer .point').count() >= 4,
            "more merges after the restart",
            timeout=120,
        )
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-xas.png"), full_page=True)
        if os.environ.get("VIEWER_DOCS_SCREENSHOT"):
            shutil.copy(ARTIFACTS / "viewer-xas.png", ROOT / "docs" / "images" / "viewer.png")
        assert page.problems == []
    finally:
        pipeline.stop_all()
