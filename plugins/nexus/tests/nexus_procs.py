"""A `pipeline worker` process running nexus.writer on the embedded transport, fed by the test
(the NeXus plugin's tests run with only the core and this plugin installed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PIPELINE = str(Path(sys.executable).with_name("pipeline"))


def spawn(pipeline: Path, unit: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(log.parent / "cache")
    out = open(log, "ab")  # noqa: SIM115  (the process holds it)
    return subprocess.Popen(
        [PIPELINE, "worker", str(pipeline), unit, "--status-interval", "0.3"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class Feeder:
    """Writes messages into the pipeline's streams as an upstream unit would (JSON payloads with
    a provenance key)."""

    def __init__(self, store: Path) -> None:
        from asapo_pipelines.transport import open_transport

        self.transport = open_transport({"embedded": {"path": str(store)}})
        self.producers: dict[str, Any] = {}

    def send(self, source: str, body: dict[str, Any], key: str) -> None:
        producer = self.producers.get(source)
        if producer is None:
            producer = self.producers[source] = self.transport.producer(source)
        meta = {
            "format": "json",
            "provenance": {
                "unit": "test/upstream",
                "port": source,
                "inputs": [],
                "seq": 0,
                "key": key,
            },
        }
        producer.send("default", json.dumps(body).encode(), meta)
        producer.flush()

    def finish(self, *sources: str) -> None:
        for source in sources:
            producer = self.producers.get(source) or self.transport.producer(source)
            self.producers[source] = producer
            producer.finish_stream("default")
            producer.flush()

    def close(self) -> None:
        for producer in self.producers.values():
            producer.close()
        self.transport.close()


def last_status(store: Path, pipeline: str, instance: str) -> dict[str, Any]:
    from asapo_pipelines.transport import open_transport

    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(f"{pipeline}.status", "nexus-test-reader") as c,
    ):
        return dict(c.get_last(f"{instance}.0").metadata)


def wait_until(predicate: Any, timeout: float = 60.0, proc: Any = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the writer exited early with {proc.returncode}")
        time.sleep(0.1)
    return False
