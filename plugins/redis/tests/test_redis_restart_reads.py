"""A Redis restarted while a pipeline's workers read from it (maintenance, a failover test): the
worker taking messages rides it out, as its sends did, instead of dying on the broken
connection ("Redis ... is unreachable while taking the next message ... Connection reset by
peer"). Before, every restart cost every unit one of its restart attempts, and five restarts in
30 minutes failed the whole pipeline (an outside tester, on Slurm). `pipeline worker` processes
on a real redis-server that is stopped for two seconds mid-run: the worker ends 0, and each
message was processed exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport.formats import decode
from asapo_pipelines.worker.naming import data_source_for
from asapo_pipelines_redis.testing import RedisServer
from asapo_pipelines_redis.transport import open_transport

HERE = Path(__file__).parent
PIPELINE = Path(sys.executable).with_name("pipeline")
COUNT = 10
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow units of the lease test, installed as a real plugin distribution."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-restart-redis-test-units",
        modules={"units.py": (HERE / "lease_units.py").read_text()},
        entry_points={"restart-redis-tests": "asapo_restart_redis_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return target


def _spawn(pipeline: Path, unit: str, plugin_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(PYTHONPATH=str(plugin_path), ASAPO_PIPELINES_CACHE_DIR=str(pipeline.parent / "c"))
    log = open(pipeline.parent / f"{unit}.log", "ab")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(
        [str(PIPELINE), "worker", str(pipeline), unit, "--status-interval", "0.2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
    )


def _calls(directory: Path) -> list[int]:
    path = directory / "calls.txt"
    return [int(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []


def _wait(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _wait_for(work_dir: Path, calls: int, work: subprocess.Popen[bytes]) -> None:
    """Until the worker made `calls` calls (none: until it waits for its input)."""
    deadline = time.monotonic() + 60
    if not calls:
        time.sleep(3.0)
    while len(_calls(work_dir)) < calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert work.poll() is None, (work_dir / "work.log").read_text()
    assert len(_calls(work_dir)) >= calls, (work_dir / "work.log").read_text()


def _outage(server: RedisServer) -> None:
    """Redis down for two seconds (SIGTERM: it writes its AOF and closes every connection)."""
    server.stop(signal.SIGTERM)
    time.sleep(2.0)
    server.start()


def test_a_worker_rides_out_a_redis_restart_and_processes_each_message_once(
    tmp_path: Path, plugin_path: Path
) -> None:
    # a server of its own (it is stopped); every write on disk before Redis answers it
    with RedisServer(tmp_path / "redis", appendfsync="always") as server:
        prefix = f"restart-{uuid.uuid4().hex[:8]}"
        doc = {
            "pipeline": "restart",
            "transport": {"redis": {"url": server.url, "key_prefix": prefix}},
            "units": {
                "count": {
                    "unit": "slowredis.count",
                    "params": {"count": COUNT},
                    "outputs": {"numbers": "numbers"},
                },
                "work": {
                    "unit": "slowredis.work",
                    "params": {"delay": 0.5},
                    "inputs": {"numbers": "numbers"},
                    "outputs": {"done": "done"},
                },
            },
        }
        work_dir = tmp_path / "p"
        work_dir.mkdir()
        pipeline = work_dir / "restart.pipeline.yaml"
        pipeline.write_text(json.dumps(doc, indent=2))  # JSON is YAML
        work = _spawn(pipeline, "work", plugin_path)
        try:
            # first while the worker waits for its input (a watch-mode worker's usual state)
            _wait_for(work_dir, 0, work)
            _outage(server)
            count = _spawn(pipeline, "count", plugin_path)
            assert _wait(count) == 0, (work_dir / "count.log").read_text()
            # then while it works through its messages
            _wait_for(work_dir, 2, work)
            _outage(server)
            code = _wait(work)
        finally:
            if work.poll() is None:
                work.kill()
                work.wait()
        log = (work_dir / "work.log").read_text()
        assert code == 0, log
        assert "unreachable" not in log, log
        assert Counter(_calls(work_dir)) == dict.fromkeys(range(1, COUNT + 1), 1)
        source = data_source_for("done", "restart", "r1")
        with (
            open_transport({"url": server.url, "key_prefix": prefix}) as transport,
            transport.consumer(source, "test-reader") as consumer,
        ):
            last = consumer.stream_info("default").last_id
            done = [
                decode(m.payload, m.metadata)
                for m in (consumer.get_by_id("default", i) for i in range(1, last + 1))
            ]
        assert sorted(r["n"] for r in done) == list(range(1, COUNT + 1))
