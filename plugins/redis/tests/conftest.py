"""A real redis-server for the plugin's tests: started once per session on a free loopback port
in a temporary directory (append-only file on), stopped by the pid it was started with. Tests
that restart or break the server start their own."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines_redis.testing import RedisServer

# ends (and names) the processes a test left running: the repository's tools/, on pythonpath
pytest_plugins = ["leaked_processes"]

NEEDS_SERVER = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (Debian package redis-server)",
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    with RedisServer(tmp_path_factory.mktemp("redis-server")) as server:
        yield server


@pytest.fixture
def open_redis(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``open_redis(**options)``: a RedisTransport on the session's server with a key prefix of
    its own (tests never see each other's keys) and a payload directory in tmp_path."""
    from asapo_pipelines_redis.transport import open_transport

    opened = []

    def make(server: RedisServer | None = None, **options: Any) -> Any:
        spec = {
            "url": (server or redis_server).url,
            "key_prefix": f"t-{uuid.uuid4().hex[:10]}",
            "payload_dir": str(tmp_path / "payloads"),
            **options,
        }
        transport = open_transport(spec)
        opened.append(transport)
        return transport

    yield make
    for transport in opened:
        transport.close()
