"""What watching a pipeline costs: the viewer's poll of the transport against the least any
watcher must do, on the same embedded store in the same run.

- `peer_poll`: `streams()` on each of the pipeline's data sources, the status source and the
  error source: the counts and lags alone, the least a page showing them must read;
- `viewer_poll`: one full poll of the viewer's collector (units from the status stream, streams
  table, errors, every plot hint's newest messages decoded), with `new` messages per stream
  and one status message per unit written between polls, as in a running pipeline;
- `first_poll`: the viewer's first poll of a store already holding `messages` per stream
  (it reads only the history it shows: the newest `keep` messages per plot, status history).

The ratio `viewer_poll / peer_poll` says what the page's details cost over bare counts.

    python benchmarks/viewer.py [--json] [--messages N] [--new N] [--polls N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "core"))
sys.path.insert(0, str(ROOT / "tests" / "viewer"))

import live_units  # noqa: E402

from asapo_pipelines.transport import formats  # noqa: E402
from asapo_pipelines.transport.embedded import EmbeddedTransport  # noqa: E402
from asapo_pipelines.viewer.collector import VIEWER_GROUP, Collector  # noqa: E402
from asapo_pipelines.viewer.model import PipelineView, UnitView  # noqa: E402
from asapo_pipelines.worker.naming import errors_source, status_source, status_stream  # noqa: E402

POINTS = 120


def view_of(store: Path) -> PipelineView:
    return PipelineView(
        name="bench",
        transport={"embedded": {"path": str(store)}},
        units=(
            UnitView("waves", live_units.WAVES, outputs={"waves": "waves"}),
            UnitView("average", live_units.AVERAGE, inputs={"waves": "waves"},
                     outputs={"mean": "means"}),
            UnitView("judge", live_units.JUDGE, inputs={"mean": "means"},
                     outputs={"decisions": "decisions"}),
        ),
    )  # fmt: skip


def write(transport: EmbeddedTransport, view: PipelineView, count: int, start: int) -> None:
    curve = {"x": list(range(POINTS)), "y": [0.5] * POINTS}
    mean = {"x": curve["x"], "mean": curve["y"], "n": 0, "noise": 0.1, "label": "mean"}
    for source, value in (("waves", curve), ("means", mean), ("decisions", {"action": "stop"})):
        payload, meta = formats.encode(value, "json")
        with transport.producer(source) as producer:
            producer.send_many("default", [(payload, meta)] * count)
    with transport.producer(status_source(view.name)) as producer:
        for unit in view.units:
            producer.send(status_stream(unit.instance, 0), None, {
                "state": "running", "processed": start + count, "time": time.time(), "pid": 1,
                "started": 1.0, "rate": 1.0,
            })  # fmt: skip


def peer_poll(transport: EmbeddedTransport, view: PipelineView, readers: dict[str, Any]) -> None:
    for source in [*view.streams, status_source(view.name), errors_source(view.name)]:
        if source not in readers and source in transport.data_sources():
            readers[source] = transport.consumer(source, VIEWER_GROUP)
        if source in readers:
            readers[source].streams()


def measure(root: Path, messages: int, new: int, polls: int) -> dict[str, Any]:
    store = root / "store"
    view = view_of(store)
    with EmbeddedTransport(store) as transport:
        write(transport, view, messages, 0)
        collector = Collector(view, transport)
        t0 = time.perf_counter()
        collector.poll()
        first = time.perf_counter() - t0
        readers: dict[str, Any] = {}
        viewer_times, peer_times = [], []
        for i in range(polls):
            write(transport, view, new, messages + i * new)
            t0 = time.perf_counter()
            peer_poll(transport, view, readers)
            peer_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            collector.poll()
            viewer_times.append(time.perf_counter() - t0)
        collector.close()
        for reader in readers.values():
            reader.close()
    viewer, peer = statistics.median(viewer_times), statistics.median(peer_times)
    return {
        "messages_per_stream": messages,
        "new_per_poll": new,
        "polls": polls,
        "first_poll_ms": round(first * 1e3, 2),
        "viewer_poll_ms": round(viewer * 1e3, 2),
        "peer_poll_ms": round(peer * 1e3, 3),
        "viewer_over_peer": round(viewer / peer, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--polls", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        result = measure(Path(tmp), args.messages, args.new, args.polls)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
