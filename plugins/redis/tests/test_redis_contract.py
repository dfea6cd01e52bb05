"""The core's transport contract suite (`asapo_pipelines.testing.transport_contract`), the same
cases the built-in transports pass, run here against the redis transport on a real
redis-server: imported from the installed core, so a case added to the contract runs on Redis
too, and as a plugin author would run it for a transport of their own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asapo_pipelines.testing.transport_contract import *  # noqa: F403 (the cases)
from asapo_pipelines.testing.transport_contract import Backend


@pytest.fixture
def backend(open_redis: Any) -> Iterator[Backend]:
    # a small inline limit: the contract's larger payloads travel as shared files
    return Backend("redis", open_redis(inline_max=4096), "src")
