"""A `password_file` for a Redis server that has no password configured: over RESP3 the server
answers the password with OK (its `default` user takes any), the data flows, and the user
believed the store protected. Now `pipeline run` (and every command that opens the transport)
says so in one warning sentence, once; a server that needs the password hears no warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from asapo_pipelines_redis.testing import RedisServer

PIPELINE = Path(sys.executable).with_name("pipeline")
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian package redis-server)",
)


def _pipeline_file(work: Path, server: RedisServer, password: Path) -> Path:
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (data / f"f{i}.txt").write_text(f"file {i}\n")
    path = work / "pw.pipeline.yaml"
    path.write_text(
        "pipeline: pw\n"
        f'transport: {{redis: {{url: "{server.url}", key_prefix: "pw-{uuid.uuid4().hex[:8]}", '
        f'payload_dir: payloads, password_file: "{password}"}}}}\n'
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}, outputs: {files: raw}}\n"
        "  sink: {unit: core.jsonl-sink, params: {path: out.jsonl}, inputs: {messages: raw}}\n"
    )
    return path


def _run(file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env.update(ASAPO_PIPELINES_CACHE_DIR=str(file.parent / "cache"), COLUMNS="200")
    return subprocess.run(
        [str(PIPELINE), "run", str(file)],
        cwd=file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _warnings(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("warning: ")]


def test_a_password_for_a_server_without_one_is_said_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    password = tmp_path / "redis.password"
    password.write_text("s3cret\n")
    # the premise: this server takes a client without any password
    assert redis.Redis.from_url(redis_server.url).ping()
    file = _pipeline_file(tmp_path, redis_server, password)

    done = _run(file)
    assert done.returncode == 0, done.stderr  # not a failure: the data still flows
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3
    warned = _warnings(done)
    assert len(warned) == 1, done.stderr
    assert f"Redis at 127.0.0.1:{redis_server.port}" in warned[0]
    assert f"password_file {password} protects nothing" in warned[0]
    assert "s3cret" not in done.stdout + done.stderr


def test_a_server_that_needs_the_password_is_not_warned_about(tmp_path: Path) -> None:
    password = tmp_path / "redis.password"
    password.write_text("s3cret\n")
    with RedisServer(tmp_path / "server", password="s3cret") as server:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis.from_url(server.url).ping()
        done = _run(_pipeline_file(tmp_path / "work", server, password))
    assert done.returncode == 0, done.stderr
    assert _warnings(done) == [], done.stderr
