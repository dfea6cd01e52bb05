"""`pipeline prune FILE` on redis keeps what another running pipeline reads as external: the QA
report's pipelines `src` (ran to its end) and `ext` (running, reading `src.r1.raw`) on one
redis-server and key prefix. Real `pipeline` commands on a real redis-server on loopback; the
embedded store's case is in test_runs_prune_running.py."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from runs_helpers import one_sentence

from helpers import run_pipeline, wait_for

pytestmark = pytest.mark.slow


def _write(directory: Path, name: str, transport: dict[str, Any], units: dict[str, Any]) -> str:
    doc: dict[str, Any] = {"pipeline": name, "transport": {"redis": transport}, "units": units}
    if name == "ext":
        doc["streams"] = {"src.r1.raw": {"external": True}}
    (directory / f"{name}.pipeline.yaml").write_text(json.dumps(doc, indent=2))
    return f"{name}.pipeline.yaml"


def _sink(name: str, stream: str) -> dict[str, Any]:
    return {
        "unit": "core.jsonl-sink",
        "params": {"path": f"results/{name}.jsonl"},
        "inputs": {"messages": stream},
    }


def test_prune_on_redis_keeps_what_another_running_pipeline_reads(tmp_path):
    pytest.importorskip("asapo_pipelines_redis")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    from asapo_pipelines_redis.testing import RedisServer

    with RedisServer(tmp_path / "redis-server") as server:
        transport = {"url": server.url, "key_prefix": f"ext-{uuid.uuid4().hex[:8]}"}
        (tmp_path / "in").mkdir()
        for i in range(3):
            (tmp_path / "in" / f"a{i}.txt").write_text(f"a{i}\n")
        files = {"unit": "core.files", "params": {"directory": "in/"}, "outputs": {"files": "raw"}}
        src = _write(tmp_path, "src", transport, {"files": files, "sink": _sink("src", "raw")})
        ext = _write(tmp_path, "ext", transport, {"sink": _sink("ext", "src.r1.raw")})
        done = run_pipeline("run", src, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        started = run_pipeline("run", ext, "--detach", cwd=tmp_path, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        result = tmp_path / "results" / "ext.jsonl"
        try:
            wait_for(lambda: result.exists() and len(result.read_text().splitlines()) == 3, 60)
            refused = run_pipeline("prune", src, "--run", "r1", cwd=tmp_path)
            assert refused.returncode == 2, refused.stdout
            line = one_sentence(refused.stderr)
            assert "src.r1.raw of run r1 of pipeline src is read by run r1 of pipeline ext" in line
            pruned = run_pipeline("prune", src, "--older-than", "0s", "--json", cwd=tmp_path)
            assert pruned.returncode == 0, pruned.stderr
            report = json.loads(pruned.stdout)
            assert not [s for s, _ in report["dropped_streams"] if s == "src.r1.raw"], report
            readers = [r for r in report["kept_running"] if r["reads"]]
            assert [(r["pipeline"], r["run"], r["reads"]) for r in readers] == [
                ("ext", "r1", ["src.r1.raw"])
            ]
        finally:
            stopped = run_pipeline("stop", ext, cwd=tmp_path, timeout=120)
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr
