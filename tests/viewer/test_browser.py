"""The viewer in a real headless chromium while a pipeline of real worker processes runs."""

from __future__ import annotations

import shutil
import time
from typing import Any

from viewer_support import ARTIFACTS, ROOT


def unit_row(page: Any, instance: str) -> dict[str, str]:
    cells = page.locator(f'#units tr[data-unit="{instance}"] td').all_text_contents()
    keys = ["unit", "state", "processed", "rate", "backlog", "lag", "errors", "restarts"]
    return dict(zip(keys, cells, strict=False))


def wait_for(page: Any, predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        page.wait_for_timeout(200)
    raise AssertionError(f"the page never showed {what}")


def test_live_page_follows_a_running_pipeline(page, live_pipeline):
    pipeline = live_pipeline(count=60, delay=0.3, fail_every=9)
    pipeline.start_all()
    page.goto(pipeline.serve())

    # the graph has a node for every unit and every stream, units drawn with their names
    page.wait_for_selector("#graph svg [data-node]")
    keys = page.eval_on_selector_all(
        "#graph [data-node]", "nodes => nodes.map(n => n.getAttribute('data-node'))"
    )
    assert sorted(keys) == sorted(
        [f"u:{u.instance}" for u in pipeline.view.units] + [f"s:{s}" for s in pipeline.view.streams]
    )
    assert page.locator('#graph [data-node="u:average"] text.name').text_content() == "average"

    # counters increase without a reload: a marker set in the page survives
    page.evaluate("window.__sameDocument = true")
    first = wait_for(
        page,
        lambda: int(unit_row(page, "average").get("processed") or 0),
        "processed messages of average",
        # three worker processes start and import the plugin first: on a loaded 2-core
        # machine that alone has taken most of a minute
        timeout=120,
    )
    wait_for(
        page,
        lambda: int(unit_row(page, "average")["processed"]) > first + 3,
        "the processed count rising",
    )
    assert page.evaluate("window.__sameDocument") is True
    line = page.locator('#graph [data-node="u:average"] [data-field="line1"]').text_content()
    assert line.startswith("processed ")
    assert line != "processed 0 \u00b7 0.0/s"
    assert "state-running" in page.get_attribute('#graph [data-node="u:average"]', "class")

    # the overlay of each scan and the running mean, plotted from the units' plot hints
    wait_for(
        page,
        lambda: (
            int(page.get_attribute('[data-plot="curves"]', "data-traces") or 0) >= 3
            if page.locator('[data-plot="curves"]').count()
            else False
        ),
        "the curves plot with several scans",
    )
    legend = page.locator('[data-plot="curves"] .legendtext').all_text_contents()
    assert any(name.startswith("mean of ") for name in legend)
    assert any(name.startswith("scan ") for name in legend)
    assert page.locator('[data-plot="judge-0"] .scatterlayer .point').count() >= 1

    # a unit killed on purpose shows as restarting, then as restarted once it is back
    before_kill = int(unit_row(page, "average")["processed"])
    pipeline.kill("average")
    wait_for(
        page,
        lambda: unit_row(page, "average")["state"] == "restarting",
        "average as restarting",
    )
    assert "state-restarting" in page.get_attribute('#graph [data-node="u:average"]', "class")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "viewer-restarting.png"), full_page=True)
    pipeline.start("average")
    wait_for(
        page,
        lambda: (
            unit_row(page, "average")["restarts"] == "1"
            and unit_row(page, "average")["state"] in ("running", "finished")
        ),
        "average running again with one restart",
    )
    # the count goes on over the unit's processes instead of starting again from zero
    wait_for(
        page,
        lambda: int(unit_row(page, "average")["processed"]) > before_kill,
        "the processed count of average going on after its restart",
    )

    # errors of the unit listed with their tracebacks; their HTML stays text
    wait_for(page, lambda: page.locator("#errors li").count() >= 1, "an error")
    first_error = page.locator("#errors li").first
    assert "looks <b>odd</b> & is rejected" in first_error.text_content()
    assert "Traceback" in first_error.locator("pre").text_content()
    assert page.locator("#errors b").count() == 0

    # the latest messages of a chosen stream, with their metadata
    page.select_option("#stream-select", "means")
    wait_for(page, lambda: page.locator("#messages tbody tr").count() >= 1, "messages")
    assert "provenance" in page.locator("#messages tbody tr").first.text_content()

    # the streams table: messages and each unit's lag
    row = page.locator("#streams tbody tr", has_text="waves").first.text_content()
    assert "average" in row

    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)
    if (ROOT / "docs").is_dir() and __import__("os").environ.get("VIEWER_DOCS_SCREENSHOT"):
        shutil.copy(ARTIFACTS / "viewer.png", ROOT / "docs" / "images" / "viewer.png")
    assert page.problems == []
