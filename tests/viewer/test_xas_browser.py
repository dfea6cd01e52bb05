"""The viewer following the P65 XAS pipeline (xas plugin, xraylarch) in a real chromium.

Scan files arrive one by one in a watched directory, as at the beamline; every unit runs as a
`pipeline worker` process and the page is served by `pipeline view`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from pathlib import Path

import pytest
from test_browser import unit_row, wait_for
from viewer_support import ARTIFACTS, ROOT, LivePipeline

P65_SCANS = ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi")
PIPELINE = """\
pipeline: p65-xas
transport: {embedded: {path: .pipeline-data}}
units:
  scans:
    unit: xas.scan-files
    params: {directory: %(data)s, pattern: "*.xdi", watch: true, settle_seconds: 0.2}
    outputs: {scans: raw-scans}
  normalize:
    unit: xas.normalize
    params:
      mode: transmission
      autobk: {rbkg: 1, kweight: 2}
      noise: {rmin: 15, rmax: 25, kweight: 2, kmin: 2}
    inputs: {scans: raw-scans}
    outputs: {spectra: spectra}
  merge:
    unit: xas.merge
    inputs: {spectra: spectra}
    outputs: {merged: merged}
  advisor:
    unit: xas.convergence-agent
    params: {target_noise: 1.0e-9, max_scans: 40}
    inputs: {merged: merged}
    outputs: {plans: plans}
"""


def xas_data() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        for candidate in (parent / "examples" / "data", parent / "shared" / "data" / "xas"):
            if all((candidate / name).is_file() for name in P65_SCANS):
                return candidate
    return None


def xas_unavailable() -> str | None:
    """Why the XAS pipeline cannot run in this build (its plugin is built alongside)."""
    from asapo_pipelines.catalog import Catalog

    catalog = Catalog.load()
    if "xas.merge" not in catalog:
        return "the xas plugin is not installed"
    runtime = catalog.get("xas.merge").runtime.partition(":")[0]
    if importlib.util.find_spec(runtime) is None:
        return f"the xas plugin's runtime module {runtime} is not in this build yet"
    if not any(h.kind == "xy" for h in catalog.get("xas.merge").plots):
        return "xas.merge declares no xy plot hint yet"
    if xas_data() is None:
        return "the P65 test scans are not in this checkout"
    return None


class XasPipeline(LivePipeline):
    def __init__(self, root: Path) -> None:
        from asapo_pipelines.catalog import Catalog
        from asapo_pipelines.viewer.model import load_view

        self.data = root / "data"
        self.data.mkdir()
        self.file = root / "p65-xas.pipeline.yaml"
        self.file.write_text(PIPELINE % {"data": self.data}, encoding="utf-8")
        self.catalog = Catalog.load()
        self.view = load_view(self.file, self.catalog)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.logs = root / "logs"
        self.logs.mkdir()
        self.procs = {}
        self.starts = {}
        self.viewer = None
        self.stop_feeding = threading.Event()

    def feed(self, scans: int, every: float) -> threading.Thread:
        """Copy the P65 repeats into the watched directory, one scan every `every` seconds."""
        source = xas_data()
        assert source is not None

        def run() -> None:
            for i in range(scans):
                name = f"20K_GOE_Fe_K_240.{i:05d}.xdi"  # repeats of one sample, as measured
                shutil.copy(source / P65_SCANS[i % 2], self.data / f".{name}")
                os.replace(self.data / f".{name}", self.data / name)
                if self.stop_feeding.wait(every):
                    return

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def merge_figure(self) -> str:
        unit = self.view.unit("merge")
        assert unit is not None
        for i, hint in enumerate(unit.descriptor.plots):
            if hint.kind == "xy":
                return hint.figure or f"merge-{i}"
        raise AssertionError("no xy hint")


def test_xas_pipeline_in_the_viewer(page, tmp_path):
    why = xas_unavailable()
    if why:
        pytest.skip(why)
    pipeline = XasPipeline(tmp_path)
    feeder = None
    try:
        pipeline.start_all()
        feeder = pipeline.feed(scans=24, every=1.0)
        page.goto(pipeline.serve())
        page.wait_for_selector("#graph svg [data-node]")
        keys = page.eval_on_selector_all(
            "#graph g.unit", "nodes => nodes.map(n => n.getAttribute('data-node'))"
        )
        assert sorted(keys) == ["u:advisor", "u:merge", "u:normalize", "u:scans"]

        page.evaluate("window.__sameDocument = true")
        first = wait_for(
            page, lambda: int(unit_row(page, "normalize").get("processed") or 0), "normalised scans"
        )
        wait_for(
            page,
            lambda: int(unit_row(page, "normalize")["processed"]) > first,
            "the normalised count rising",
            timeout=120,
        )
        assert page.evaluate("window.__sameDocument") is True

        # each normalised scan overlaid with the newest merge, drawn from the plot hints
        figure = pipeline.merge_figure()
        plot = f'[data-plot="{figure}"]'
        wait_for(
            page,
            lambda: (
                page.locator(plot).count() == 1
                and any(
                    " scans merged (" in name
                    for name in page.locator(f"{plot} .legendtext").all_text_contents()
                )
                and int(page.get_attribute(plot, "data-traces") or 0) >= 3
            ),
            "the merged spectrum over its scans",
            timeout=120,
        )
        # the noise against the number of scans merged, and the agent's decisions
        wait_for(
            page,
            lambda: page.locator('[data-plot="noise"] .scatterlayer .point').count() >= 2,
            "the noise plot",
            timeout=120,
        )
        wait_for(
            page,
            lambda: page.locator('[data-plot="advisor-0"] .scatterlayer .point').count() >= 2,
            "the decisions timeline",
            timeout=120,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer-xas.png"), full_page=True)

        pipeline.kill("merge")
        wait_for(page, lambda: unit_row(page, "merge")["state"] == "restarting", "a restart")
        pipeline.start("merge")
        wait_for(
            page,
            lambda: (
                unit_row(page, "merge")["restarts"] == "1"
                and unit_row(page, "merge")["state"] == "running"
            ),
            "merge running again after one restart",
            timeout=120,
        )
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "viewer-xas.png"), full_page=True)
        if os.environ.get("VIEWER_DOCS_SCREENSHOT"):
            shutil.copy(ARTIFACTS / "viewer-xas.png", ROOT / "docs" / "images" / "viewer.png")
        assert page.problems == []
    finally:
        pipeline.stop_feeding.set()
        pipeline.stop_all()
        if feeder is not None:
            feeder.join(timeout=10)
