"""The page shows `redelivered` (messages handed again after a worker was killed; `processed`
counts each once) as `pipeline status` does: a column of the units table once some unit has
any, and a count in the unit's box in the graph, kept inside the box. The viewer served on
loopback over an embedded store holding the status records the workers publish, the page in
a real chromium."""

from __future__ import annotations

import time
from typing import Any

import live_units

from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.viewer.model import PipelineView, UnitView
from asapo_pipelines.worker.naming import status_source, status_stream

#: large enough that the graph's line would run past its box unless kept in it
AGAIN = 123456


def _view(store: str) -> PipelineView:
    return PipelineView(
        name="again-demo",
        transport={"embedded": {"path": store}},
        units=(
            UnitView("waves", live_units.WAVES, outputs={"waves": "waves"}),
            UnitView(
                "average", live_units.AVERAGE, inputs={"waves": "waves"}, outputs={"mean": "means"}
            ),
        ),
    )


def _publish(transport: EmbeddedTransport, instance: str, *, redelivered: int, pid: int) -> None:
    """A worker's status record, as `worker.status` publishes it."""
    with transport.producer(status_source("again-demo")) as producer:
        producer.send(
            status_stream(instance, 0),
            None,
            {
                "unit": f"live.{instance}",
                "instance": instance,
                "replica": 0,
                "state": "finished",
                "received": 40,
                "processed": 40,
                "redelivered": redelivered,
                "errors": 0,
                "rate": 1.5,
                "time": time.time(),
                "pid": pid,
                "host": "node",
                "started": 1.0,
                "session": "r1@1.0",
            },
        )


def _columns(page: Any) -> list[str]:
    return page.locator("#units thead th").all_text_contents()


def _row(page: Any, instance: str) -> dict[str, str]:
    cells = page.locator(f'#units tr[data-unit="{instance}"] td').all_text_contents()
    return dict(zip(_columns(page), cells, strict=True))


def _line2(page: Any, instance: str) -> str:
    return page.locator(f'#graph [data-node="u:{instance}"] [data-field="line2"]').text_content()


def _inside_its_box(page: Any, instance: str) -> bool:
    return page.eval_on_selector(
        f'#graph [data-node="u:{instance}"]',
        """g => {
          const box = g.querySelector('rect').getBoundingClientRect();
          const text = g.querySelector('[data-field="line2"]').getBoundingClientRect();
          return text.left >= box.left && text.right <= box.right;
        }""",
    )


def _wait(page: Any, predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, f"the page never showed {what}"
        page.wait_for_timeout(100)


def test_redelivered_shows_once_a_unit_has_any(page, serve, tmp_path):
    store = str(tmp_path / "store")
    with EmbeddedTransport(store) as transport:
        for instance in ("waves", "average"):
            _publish(transport, instance, redelivered=0, pid=1)
        page.goto(serve(_view(store), transport))
        _wait(page, lambda: _line2(page, "average").startswith("lag 0.0s"), "the counters")
        # none handed again: no column, nothing in the graph, as `pipeline status` shows it
        assert "redelivered" not in _columns(page)
        assert "redelivered" not in _line2(page, "average")

        _publish(transport, "average", redelivered=AGAIN, pid=2)
        _wait(page, lambda: "redelivered" in _columns(page), "the redelivered column")
        assert _columns(page)[-1] == "redelivered"
        assert _row(page, "average")["redelivered"] == str(AGAIN)
        assert _row(page, "waves")["redelivered"] == "0"
        assert _row(page, "average")["processed"] == "40"  # each message once
        assert _line2(page, "average").endswith(f"\u00b7 redelivered {AGAIN}")
        assert "redelivered" not in _line2(page, "waves")
        assert _inside_its_box(page, "average")
        assert page.problems == []
