"""The core's transport contract suite (tests/transport/test_transport_contract.py), the same
cases, run here against the redis transport on a real redis-server: imported, not copied, so a
case added to the contract runs on Redis too. (With the core's tests and this plugin installed
together, tests/transport runs them as its `redis` backend as well.)"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CONTRACT = (
    Path(__file__).resolve().parents[3] / "tests" / "transport" / "test_transport_contract.py"
)

if not CONTRACT.is_file():  # an sdist of the plugin alone has no core tests
    pytest.skip(f"the core's contract suite is not here ({CONTRACT})", allow_module_level=True)

_spec = importlib.util.spec_from_file_location("transport_contract", CONTRACT)
assert _spec is not None
assert _spec.loader is not None
_contract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_contract)
globals().update({k: v for k, v in vars(_contract).items() if k.startswith("test_contract_")})


@dataclass
class Backend:
    kind: str
    transport: Any
    source: str
    settle: float = 0.0

    def stream(self) -> str:
        return f"t{uuid.uuid4().hex[:12]}"

    def group(self) -> str:
        return f"g{uuid.uuid4().hex[:12]}"


@pytest.fixture
def backend(open_redis: Any) -> Iterator[Backend]:
    # a small inline limit: the contract's larger payloads travel as shared files
    return Backend("redis", open_redis(inline_max=4096), "src")
