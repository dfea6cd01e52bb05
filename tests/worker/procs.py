"""Running `pipeline worker` processes for the acceptance tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import decode
from asapo_pipelines.worker.naming import data_source_for

from helpers import CACHE_DIR, PIPELINE


def worker_env(plugin_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["PYTHONPATH"] = str(plugin_path)
    env["ASAPO_PIPELINES_CACHE_DIR"] = CACHE_DIR
    return env


def spawn(
    pipeline: Path, unit: str, env: dict[str, str], *args: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log or os.devnull, "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [PIPELINE, "worker", str(pipeline), unit, "--status-interval", "0.2", *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
    )


def wait_ok(proc: subprocess.Popen[bytes], timeout: float = 240.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise


def write_pipeline(directory: Path, units: dict[str, Any], streams: dict | None = None) -> Path:
    """A pipeline file (JSON is YAML) in `directory`, with the embedded store beside it."""
    path = directory / "test.pipeline.yaml"
    doc = {"pipeline": "accept", "transport": {"embedded": {"path": "store"}}, "units": units}
    if streams:
        doc["streams"] = streams
    path.write_text(json.dumps(doc, indent=2))
    return path


def own(stream: str, run: str = "r1") -> str:
    """The data source of the test pipeline's own stream: workers started by hand in a fresh
    store work in its first run (asapo_pipelines.worker.naming)."""
    return data_source_for(stream, "accept", run)


def read_stream(store: Path, source: str, stream: str = "default") -> list[Any]:
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(source, "test-reader") as c,
    ):
        info = c.stream_info(stream)
        return [c.get_by_id(stream, i) for i in range(1, info.last_id + 1)]


def values(messages: list[Any]) -> list[Any]:
    return [decode(m.payload, m.metadata) for m in messages]


def wait_until(predicate: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
