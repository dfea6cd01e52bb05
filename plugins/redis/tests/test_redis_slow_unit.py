"""A unit slower than its lease on Redis, with `pipeline worker` processes on a real
redis-server: the worker renews the leases of what it holds (the consumer's `extend_lease`), so
an idle replica never takes a message the busy one still works on and each message is
processed once, as on the embedded store (tests/worker/test_slow_units.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport.formats import decode
from asapo_pipelines.worker.naming import data_source_for
from asapo_pipelines_redis.testing import RedisServer
from asapo_pipelines_redis.transport import open_transport

HERE = Path(__file__).parent
PIPELINE = Path(sys.executable).with_name("pipeline")
#: short leases make the test quick: what holds for 30 s holds for 1 s
LEASE = ("--lease-seconds", "1.0")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow units installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-slow-redis-test-units",
        modules={"units.py": (HERE / "lease_units.py").read_text()},
        entry_points={"slow-redis-tests": "asapo_slow_redis_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return target


def _spawn(pipeline: Path, unit: str, plugin_path: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(PYTHONPATH=str(plugin_path), ASAPO_PIPELINES_CACHE_DIR=str(pipeline.parent / "c"))
    log = open(pipeline.parent / f"{unit}.log", "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [str(PIPELINE), "worker", str(pipeline), unit, "--status-interval", "0.2", *args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
    )


def _wait_ok(proc: subprocess.Popen[bytes], timeout: float = 240.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _calls(directory: Path) -> list[int]:
    """The number of each call the unit got, in order."""
    path = directory / "calls.txt"
    return [int(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []


def _results(transport: Any) -> list[Any]:
    source = data_source_for("done", "slow", "r1")
    with transport.consumer(source, "test-reader") as consumer:
        last = consumer.stream_info("default").last_id
        found = [consumer.get_by_id("default", i) for i in range(1, last + 1)]
    return [decode(m.payload, m.metadata) for m in found]


def test_a_message_worked_on_past_its_lease_is_processed_once_on_redis(
    redis_server: RedisServer, tmp_path: Path, plugin_path: Path
) -> None:
    prefix = f"slow-{uuid.uuid4().hex[:8]}"
    doc = {
        "pipeline": "slow",
        "transport": {"redis": {"url": redis_server.url, "key_prefix": prefix}},
        "units": {
            "count": {
                "unit": "slowredis.count",
                "params": {"count": 2},
                "outputs": {"numbers": "numbers"},
            },
            "work": {
                "unit": "slowredis.work",
                # three leases per message
                "params": {"delay": 3.0},
                "replicas": 3,
                "inputs": {"numbers": "numbers"},
                "outputs": {"done": "done"},
            },
        },
    }
    pipeline = tmp_path / "slow.pipeline.yaml"
    pipeline.write_text(json.dumps(doc, indent=2))  # JSON is YAML
    # two messages, three replicas: the idle one would take a message whose lease ran out
    procs = [_spawn(pipeline, "count", plugin_path)] + [
        _spawn(pipeline, "work", plugin_path, *LEASE, "--replica", str(i)) for i in range(3)
    ]
    codes = [_wait_ok(p) for p in procs]
    logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
    assert codes == [0, 0, 0, 0], logs
    assert Counter(_calls(tmp_path)) == {1: 1, 2: 1}
    assert "cannot extend a lease" not in logs
    with open_transport({"url": redis_server.url, "key_prefix": prefix}) as transport:
        assert sorted(r["n"] for r in _results(transport)) == [1, 2]
