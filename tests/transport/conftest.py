"""Backends for the transport contract suite: embedded always, real ASAP::O when configured."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asapo_pipelines.transport import Transport, open_transport

ASAPO_ENV = "ASAPO_ENDPOINT"


@dataclass
class Backend:
    kind: str
    transport: Transport
    source: str
    #: how long the backend may take to make a sent message visible
    settle: float

    def stream(self) -> str:
        # unique per test: a real ASAP::O keeps streams between runs
        return f"t{uuid.uuid4().hex[:12]}"

    def group(self) -> str:
        return f"g{uuid.uuid4().hex[:12]}"


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


@pytest.fixture(params=["embedded", "asapo"])
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Backend]:
    if request.param == "embedded":
        transport = open_transport({"embedded": {"path": str(tmp_path / "store")}})
        yield Backend("embedded", transport, "src", settle=0.0)
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
