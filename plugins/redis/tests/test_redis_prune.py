"""`pipeline prune FILE` on redis: pipelines sharing a redis-server and a key prefix meet in
`<key_prefix>:sources`, and a prune by age with one pipeline's file dropped the others'
streams too; it touches FILE's own namespace only. And the streams of a run that is still
running stay (dropped under its workers, they are re-created with ids from 1 again and the sink
takes the new messages for ones it already wrote). Real `pipeline` commands on a real
redis-server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines_redis.testing import RedisServer

PIPELINE = Path(sys.executable).with_name("pipeline")
pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=str(cwd / "cache"), COLUMNS="200")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(PIPELINE), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _write(work: Path, name: str, transport: dict[str, Any], *, watch: bool = False) -> str:
    """A files -> sink pipeline `name` reading `<name>-in/` (JSON is YAML)."""
    (work / f"{name}-in").mkdir(exist_ok=True)
    params: dict[str, Any] = {"directory": f"{name}-in/", "pattern": "*.txt"}
    if watch:
        params.update(watch=True, settle_seconds=0.2)
    doc = {
        "pipeline": name,
        "transport": {"redis": transport},
        "units": {
            "files": {"unit": "core.files", "params": params, "outputs": {"files": "raw"}},
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": f"results/{name}.jsonl", "payload": "text"},
                "inputs": {"messages": "raw"},
            },
        },
    }
    (work / f"{name}.pipeline.yaml").write_text(json.dumps(doc, indent=2))
    return f"{name}.pipeline.yaml"


def _held(transport: dict[str, Any], prefix: str) -> dict[tuple[str, str], int]:
    """(data source, stream) -> last id of the data sources starting with `prefix`."""
    from asapo_pipelines_redis.transport import open_transport

    opened = open_transport(transport)
    try:
        described = opened.describe()
    finally:
        opened.close()
    return {
        (source, info.name): info.last_id
        for source, infos in described.items()
        if source.startswith(prefix)
        for info in infos
    }


def _lines(work: Path, name: str) -> int:
    path = work / "results" / f"{name}.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_prune_with_a_file_drops_only_that_pipelines_streams(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = {"url": redis_server.url, "key_prefix": f"scope-{uuid.uuid4().hex[:8]}"}
    for name in ("alpha", "beta"):
        file = _write(tmp_path, name, shared)
        (tmp_path / f"{name}-in" / "one.txt").write_text(f"{name}\n")
        done = _cli("run", file, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
    beta = _held(shared, "beta.")
    assert beta[("beta.r1.raw", "default")] == 1
    pruned = _cli("prune", "alpha.pipeline.yaml", "--older-than", "0s", "--json", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    dropped = json.loads(pruned.stdout)["dropped_streams"]
    assert ["alpha.r1.raw", "default"] in dropped
    assert [s for s, _ in dropped if not s.startswith("alpha.")] == []
    assert _held(shared, "beta.") == beta
    assert _held(shared, "alpha.r1.") == {}


def test_prune_keeps_the_streams_of_a_run_still_running(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    transport = {"url": redis_server.url, "key_prefix": f"live-{uuid.uuid4().hex[:8]}"}
    file = _write(tmp_path, "live", transport, watch=True)
    started = _cli("run", file, "--detach", cwd=tmp_path)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        for i in range(5):
            (tmp_path / "live-in" / f"a{i}.txt").write_text(f"a{i}\n")
        deadline = time.monotonic() + 60
        while _lines(tmp_path, "live") < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _lines(tmp_path, "live") == 5
        time.sleep(3)
        pruned = _cli("prune", file, "--older-than", "2s", cwd=tmp_path)
        refused = _cli("prune", file, "--run", "r1", cwd=tmp_path)
        for i in range(3):
            (tmp_path / "live-in" / f"b{i}.txt").write_text(f"b{i}\n")
        deadline = time.monotonic() + 60
        while _lines(tmp_path, "live") < 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _lines(tmp_path, "live") == 8
    finally:
        stopped = _cli("stop", file, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert pruned.returncode == 0, pruned.stderr
    assert "kept " in pruned.stdout
    assert "of run r1 of pipeline live, which is running; stop it first" in pruned.stdout
    assert refused.returncode != 0
    assert "run r1 of pipeline live is running; stop it first" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_prune_trims_old_payload_less_messages_of_a_live_stream(open_redis: Any) -> None:
    """Trimming messages without payload freed 0 bytes, which the trim script passed to
    HINCRBY as '-0', and Redis refused it: `prune --older-than` failed on any live stream
    whose old messages had no payload."""
    transport = open_redis()
    with transport.producer("live") as producer:
        for i in range(3):
            producer.send("default", None, {"i": i})
    time.sleep(1.2)
    with transport.producer("live") as producer:
        producer.send("default", None, {"i": 3})
    report = transport.prune(1.0, "live")
    assert report.deleted_messages == 3
    assert report.dropped_streams == []
    with transport.consumer("live", "g") as consumer:
        assert consumer.get_by_id("default", 4).metadata["i"] == 3
