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


def _payload_bytes(root: Path, *patterns: str) -> int:
    """Bytes of the payload files under `root` in the directories `patterns` match (one per
    data source, `<data source>/<stream>` for one stream)."""
    return sum(f.stat().st_size for p in patterns for d in root.glob(p) for f in d.rglob("*.bin"))


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


def test_prune_of_a_run_reports_the_payload_files_it_freed_not_inline_payloads(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """`prune --run` reported the payloads held inline in Redis as "payload files freed" (the
    stream's size), with nothing in payload_dir; the embedded store counts only the files it
    deletes. Payloads above inline_max are files here, the others inline."""
    prefix = f"freed-{uuid.uuid4().hex[:8]}"
    payloads = tmp_path / "payloads"
    for name, inline_max in (("inline", 1024 * 1024), ("mixed", 200)):
        transport = {
            "url": redis_server.url,
            "key_prefix": prefix,
            "payload_dir": str(payloads),
            "inline_max": inline_max,
        }
        file = _write(tmp_path, name, transport)
        for i in range(3):
            (tmp_path / f"{name}-in" / f"small{i}.txt").write_text(f"{i}\n")
            (tmp_path / f"{name}-in" / f"large{i}.txt").write_text(f"{i}\n" * 400)
        done = _cli("run", file, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert _lines(tmp_path, name) == 6
    assert _payload_bytes(payloads, "inline.*") == 0
    # the run's streams and its record (the pipeline file's text is above 200 bytes)
    run_r1 = ("mixed.r1.*", "mixed.runs/r1")
    held = _payload_bytes(payloads, *run_r1)
    assert held > _payload_bytes(payloads, "mixed.runs/r1") > 0

    inline = _cli("prune", "inline.pipeline.yaml", "--run", "r1", cwd=tmp_path)
    assert inline.returncode == 0, inline.stderr
    assert "2 streams dropped, 0 B of payload files freed" in inline.stdout
    mixed = _cli("prune", "mixed.pipeline.yaml", "--run", "r1", "--json", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    assert json.loads(mixed.stdout)["freed_bytes"] == held
    assert _payload_bytes(payloads, *run_r1) == 0


def test_prune_by_age_counts_the_payload_files_it_trims(open_redis: Any, tmp_path: Path) -> None:
    """Trimming the old messages of a live stream counted their inline payloads as freed."""
    transport = open_redis(inline_max=10)
    with transport.producer("live") as producer:
        producer.send_many("s", [(b"inline", None), (b"x" * 100, None), (b"y" * 300, None)])
    held = _payload_bytes(tmp_path / "payloads", "live")
    time.sleep(1.2)
    with transport.producer("live") as producer:
        producer.send("s", b"z" * 50, None)
    report = transport.prune(1.0, "live")
    assert (report.deleted_messages, report.dropped_streams) == (3, [])
    assert report.freed_bytes == held


def test_prune_by_age_trims_by_the_servers_clock(
    open_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry ids carry the Redis server's clock, and prune compared them with the clock of the
    machine running it: one an hour ahead trimmed a live stream's messages of the last minute."""
    import asapo_pipelines_redis.transport as module

    transport = open_redis()
    with transport.producer("live") as producer:
        producer.send_many("s", [(b"recent", None)] * 3)
    ahead = time.time() + 3600
    monkeypatch.setattr(module.time, "time", lambda: ahead)
    with transport.producer("live") as producer:
        producer.send("s", b"newest", None)  # the stream is written "now" by either clock
    report = transport.prune(600.0, "live")
    assert (report.deleted_messages, report.dropped_streams) == (0, [])
    with transport.consumer("live", "g") as consumer:
        assert consumer.stream_info("s").message_count == 4
