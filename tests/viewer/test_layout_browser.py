"""The viewer's layout after a real local run of the P65 example, in real chromium at the widths
of a laptop (1024 px) and a beamline screen (1400 px): nothing scrolls sideways, every Units
column shows, axes carry words, the agent's target noise is drawn, the merged spectrum lets the
scans show through, and the badge says the run ended."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from test_browser import wait_for

WIDTHS = (1024, 1400)


@pytest.fixture(scope="module")
def finished_run(finished_p65):
    file = finished_p65
    viewer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asapo_pipelines",
            "view",
            str(file),
            "--port",
            "0",
            "--interval",
            "0.3",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert viewer.stderr is not None
    line = viewer.stderr.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    assert match, line
    yield match.group(1)
    viewer.send_signal(signal.SIGINT)
    try:
        viewer.wait(timeout=20)
    except subprocess.TimeoutExpired:
        viewer.kill()
        viewer.wait()


def _overflowing(page) -> list[str]:
    """Elements wider than their box: the page itself and every section (they scroll)."""
    return page.evaluate(
        """() => {
          const out = [];
          const doc = document.documentElement;
          if (doc.scrollWidth > doc.clientWidth) out.push('page ' + doc.scrollWidth);
          for (const s of document.querySelectorAll('section')) {
            if (s.scrollWidth > s.clientWidth + 1)
              out.push(s.id + ' ' + s.scrollWidth + '>' + s.clientWidth);
          }
          return out;
        }"""
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_layout_fits_and_shows_every_units_column(browser, finished_run, width):
    context = browser.new_context(viewport={"width": width, "height": 1200})
    page = context.new_page()
    try:
        page.goto(finished_run)
        page.wait_for_selector("#units tbody tr")
        wait_for(page, lambda: page.locator('[data-plot="spectra"] .xtitle').count() == 1, "plots")
        assert _overflowing(page) == []
        # every column of the Units table is inside its section's visible box
        right = page.evaluate(
            "document.querySelector('#units-section').getBoundingClientRect().right"
        )
        edges = page.eval_on_selector_all(
            "#units th", "cells => cells.map(c => c.getBoundingClientRect().right)"
        )
        assert len(edges) == 8
        assert max(edges) <= right
        graph = page.evaluate(
            "[document.querySelector('#graph svg').getBoundingClientRect().width,"
            " document.querySelector('#graph').clientWidth]"
        )
        assert graph[0] <= graph[1] + 1  # sub-pixel rounding
    finally:
        context.close()


def test_plots_read_as_words_with_the_target_and_scans_under_the_merge(page, finished_run):
    page.goto(finished_run)
    spectra = '[data-plot="spectra"]'
    noise = '[data-plot="noise"]'
    wait_for(
        page, lambda: page.locator(f"{noise} .shapelayer path").count() >= 1, "the target line"
    )
    assert page.locator(f"{spectra} .xtitle").text_content() == "energy (eV)"
    assert page.locator(f"{spectra} .ytitle").text_content() == "normalised \u03bc(E)"
    assert page.locator(f"{noise} .xtitle").text_content() == "scans merged"
    assert page.get_attribute(noise, "data-levels") == "2"  # the target, the fitted floor
    assert "target" in " ".join(page.locator(f"{noise} .annotation-text").all_text_contents())
    traces = page.eval_on_selector(
        spectra,
        "div => Array.from(div.data, t => ({name: t.name, opacity: t.opacity,"
        " dash: (t.line || {}).dash}))",
    )
    merged = [t for t in traces if " merged (" in t["name"]]  # "2 scans merged (sample, ...)"
    scans = [t for t in traces if " merged (" not in t["name"]]
    assert len(merged) == 1
    assert len(scans) == 2
    assert merged[0]["dash"] == "dash"
    assert merged[0]["opacity"] < 1  # the scans under it show through
    # the run is over: the badge does not say live
    wait_for(page, lambda: page.text_content("#conn") == "run ended", "the run ended")
    assert page.problems == []
