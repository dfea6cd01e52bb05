"""Strings from unit names, stream names, metadata and errors reach the page as text only."""

from __future__ import annotations

import time

import live_units

from asapo_pipelines.transport import formats
from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.viewer.graph import render_svg
from asapo_pipelines.viewer.model import PipelineView, UnitView
from asapo_pipelines.worker.naming import errors_source, status_source, status_stream

SCRIPT_UNIT = "<script>window.__xss=1</script>"
IMG_UNIT = '<img src=x onerror="window.__xss=2">'
IMG_META = "<img src=x onerror=window.__xss=3>"
SCRIPT_META = "<script>window.__xss=4</script>"
IMG_SCAN = "<img src=y onerror=window.__xss=5>"
IMG_LABEL = "<img src=z onerror=window.__xss=6>"
IMG_ERROR = "<img src=e onerror=window.__xss=7> broke"


def evil_view(store: str) -> PipelineView:
    return PipelineView(
        name="evil-demo",
        transport={"embedded": {"path": store}},
        units=(
            UnitView(IMG_UNIT, live_units.WAVES, outputs={"waves": "waves"}),
            UnitView(
                SCRIPT_UNIT,
                live_units.AVERAGE,
                inputs={"waves": "waves"},
                outputs={"mean": "means"},
            ),
        ),
    )


def feed(transport: EmbeddedTransport) -> None:
    with transport.producer("waves") as producer:
        for scan in range(3):
            payload, meta = formats.encode({"x": [0, 1, 2], "y": [scan, 1, 0]}, "json")
            meta.update({"sample": IMG_META, "note": SCRIPT_META, "scan_name": IMG_LABEL})
            producer.send(IMG_SCAN, payload, meta)
    with transport.producer(status_source("evil-demo")) as producer:
        producer.send(
            status_stream(IMG_UNIT, 0),
            None,
            {
                "unit": "live.waves",
                "instance": IMG_UNIT,
                "replica": 0,
                "state": "running",
                "processed": 3,
                "errors": 1,
                "rate": 1.5,
                "time": time.time(),
                "pid": 1,
                "started": 1.0,
            },
        )
    with transport.producer(errors_source("evil-demo")) as producer:
        record = {
            "unit": IMG_UNIT,
            "exception": "ValueError",
            "error": IMG_ERROR,
            "message": {"data_source": "waves", "stream": IMG_SCAN, "id": 1},
            "traceback": f"Traceback (most recent call last):\n  {SCRIPT_META}\n",
        }
        payload, meta = formats.encode(record, "json")
        producer.send("waves-unit", payload, {**meta, "unit": IMG_UNIT})


def test_svg_escapes_names():
    import xml.etree.ElementTree as ET

    svg = render_svg(evil_view("/nonexistent"))
    root = ET.fromstring(svg)  # well-formed XML: every name was escaped
    ns = "{http://www.w3.org/2000/svg}"
    assert not root.findall(f".//{ns}script")
    assert not root.findall(f".//{ns}img")
    keys = {g.get("data-node") for g in root.iter(f"{ns}g")}
    assert f"u:{SCRIPT_UNIT}" in keys
    assert f"u:{IMG_UNIT}" in keys
    titles = "".join(t.text or "" for t in root.iter(f"{ns}title"))
    assert SCRIPT_UNIT in titles


def test_page_shows_html_from_the_pipeline_as_text(page, serve, tmp_path):
    store = str(tmp_path / "store")
    with EmbeddedTransport(store) as transport:
        feed(transport)
        page.goto(serve(evil_view(store), transport))
        page.wait_for_selector("#errors li")
        page.wait_for_selector('[data-plot="curves"] .legendtext')
        page.select_option("#stream-select", "waves")
        page.wait_for_selector("#messages tbody tr")
        page.wait_for_timeout(500)

        assert page.evaluate("window.__xss") is None
        # nothing the pipeline named became an element
        assert page.locator("img").count() == 0
        assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0

        units = page.locator("#units tbody tr td:first-child").all_text_contents()
        assert units == [IMG_UNIT, SCRIPT_UNIT]
        assert page.locator("#units tbody tr").first.locator("td").nth(2).text_content() == "3"
        node_names = page.locator("#graph g.unit text.name").all_text_contents()
        assert any(name.startswith("<img src=x") for name in node_names)
        messages = page.locator("#messages tbody").text_content()
        assert IMG_META in messages
        assert SCRIPT_META in messages
        assert IMG_SCAN in messages
        errors = page.locator("#errors").text_content()
        assert IMG_ERROR in errors
        assert SCRIPT_META in errors
        legend = page.locator('[data-plot="curves"] .legendtext').all_text_contents()
        assert IMG_LABEL in legend
        assert page.problems == []
