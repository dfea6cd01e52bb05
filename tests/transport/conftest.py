"""Backends for the transport contract suite.

Every run: the embedded store, and the asapo transport through DESY's real asapo_consumer /
asapo_producer wheels against a loopback ASAP::O (tests/asapo/loopback.py: a protocol-level
stand-in for discovery, authorizer, broker, file transfer and receiver). When ASAPO_ENDPOINT and
credentials are set, the same cases also run against that real ASAP::O. When the redis plugin
(plugins/redis) is installed, the same cases run against its transport on a real redis-server
that this session starts on a free loopback port (append-only file on) and stops by its pid.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.transport import open_transport

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "asapo"))

from loopback import LoopbackAsapo

from asapo_pipelines.testing.transport_contract import Backend

ASAPO_ENV = "ASAPO_ENDPOINT"
LOOPBACK_TOKEN = "loopback-contract-token"


def _asapo_spec() -> dict[str, Any] | None:
    endpoint = os.environ.get(ASAPO_ENV)
    if not endpoint:
        return None
    spec: dict[str, Any] = {"endpoint": endpoint}
    for key, env in (("beamtime", "ASAPO_BEAMTIME"), ("beamline", "ASAPO_BEAMLINE")):
        if os.environ.get(env):
            spec[key] = os.environ[env]
    if os.environ.get("ASAPO_TOKEN_FILE"):
        spec["token_file"] = os.environ["ASAPO_TOKEN_FILE"]
    else:
        spec["token_env"] = "ASAPO_TOKEN"
    return spec


@pytest.fixture(scope="session")
def loopback_asapo() -> Iterator[LoopbackAsapo]:
    """One loopback ASAP::O for the session (each test uses its own streams and groups)."""
    pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")
    with LoopbackAsapo(LOOPBACK_TOKEN) as service:
        yield service


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real redis-server for the session (each test uses its own key prefix)."""
    testing = pytest.importorskip(
        "asapo_pipelines_redis.testing", reason="the redis plugin (plugins/redis) is not installed"
    )
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    with testing.RedisServer(tmp_path_factory.mktemp("redis-server")) as server:
        yield server


@pytest.fixture(params=["embedded", "asapo-loopback-protocol-level", "asapo-real-service", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        # through the core's open_transport: the plugin's runtime, found by the registry
        transport = open_transport(
            {
                "redis": {
                    "url": server.url,
                    "key_prefix": f"contract-{uuid.uuid4().hex[:8]}",
                    # the contract's larger payloads go through the shared payload directory
                    "inline_max": 4096,
                    "payload_dir": str(tmp_path / "payloads"),
                }
            }
        )
        assert type(transport).__module__ == "asapo_pipelines_redis.transport"
        yield Backend("redis", transport, "src", settle=0.0)
        transport.close()
        return
    if request.param == "embedded":
        transport = open_transport({"embedded": {"path": str(tmp_path / "store")}})
        yield Backend("embedded", transport, "src", settle=0.0)
        transport.close()
        return
    if request.param == "asapo-loopback-protocol-level":
        service = request.getfixturevalue("loopback_asapo")
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv("LOOPBACK_ASAPO_TOKEN", LOOPBACK_TOKEN)
        spec = {
            "endpoint": service.endpoint,
            "beamtime": service.beamtime,
            "token_env": "LOOPBACK_ASAPO_TOKEN",
            "request_timeout": 5,
        }
        transport = open_transport({"asapo": spec})
        yield Backend("asapo", transport, f"src-{uuid.uuid4().hex[:8]}", settle=0.0)
        transport.close()
        return
    spec = _asapo_spec()
    if spec is None:
        pytest.skip(
            f"no ASAP::O service: set {ASAPO_ENV} (host:port), ASAPO_BEAMTIME and "
            "ASAPO_TOKEN or ASAPO_TOKEN_FILE to run the contract suite against a real ASAP::O"
        )
    pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")
    transport = open_transport({"asapo": spec})
    yield Backend("asapo", transport, f"pipelines-test-{uuid.uuid4().hex[:8]}", settle=5.0)
    transport.close()
