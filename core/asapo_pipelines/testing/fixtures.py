"""pytest fixtures to test units in-process (registered by the `asapo_pipelines` pytest plugin).

- `run_unit(unit, messages, params=..., retry=...)` -> `HarnessResult`; params are validated
  with JSON's types and `retry=None` is a pipeline file's default (3 retries, waits skipped),
  as the worker runs the unit.
- `unit_harness(unit, params=..., retry=...)` -> `UnitHarness` (step by step: `send`,
  `end_stream`, `run_source`, `stop`, `shutdown`, `restarted`); harnesses are shut down after
  the test.
- `run_chain(units, inputs, retry=..., base_dir=...)` -> `ChainResult`: several units
  in-process, each on what the earlier ones wrote (a pipeline file's `units:` mapping, or a
  list chained in order), in the folder a worker of the file works in.
- `unit_message(value, port=..., stream=..., id=..., metadata=...)` builds a message to feed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def unit_harness() -> Iterator[Callable[..., Any]]:
    from asapo_pipelines.testing.harness import UnitHarness

    made: list[UnitHarness] = []

    def make(unit: Any, params: Any = None, **kwargs: Any) -> UnitHarness:
        harness = UnitHarness(unit, params, **kwargs)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.shutdown()


@pytest.fixture
def run_unit() -> Callable[..., Any]:
    from asapo_pipelines.testing.harness import run_unit as run

    return run


@pytest.fixture
def unit_message() -> Callable[..., Any]:
    from asapo_pipelines.testing.harness import message

    return message


@pytest.fixture
def run_chain() -> Callable[..., Any]:
    from asapo_pipelines.testing.harness import run_chain as run

    return run
