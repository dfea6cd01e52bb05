"""Shared fixtures: one real queue server per session, emptied before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bluesky_services import QueueServer, start_queue_server, stop

# the SDK's in-process harness (the runner `pipeline worker` uses)
from asapo_pipelines.testing.fixtures import run_unit, unit_harness, unit_message  # noqa: F401

# ends (and names) the processes a test left running: the repository's tools/, on pythonpath
pytest_plugins = ["leaked_processes"]


@pytest.fixture(scope="session")
def queue_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueServer]:
    server = start_queue_server(tmp_path_factory.mktemp("queue-server"))
    try:
        yield server
    finally:
        for proc in reversed(server.procs):
            stop(proc)


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueServer]:
    """A queue server of the test's own, which it may stop (the session's is shared)."""
    server = start_queue_server(tmp_path_factory.mktemp("own-queue-server"))
    try:
        yield server
    finally:
        for proc in reversed(server.procs):
            stop(proc)


@pytest.fixture
def queue_server(queue_server_session: QueueServer) -> QueueServer:
    queue_server_session.reset()
    return queue_server_session


def suggestion(target: str = "GOE", scans: int = 2, **extra: object) -> dict[str, object]:
    """A suggestion as xas.convergence-agent emits it (SDK `Suggestion`, with a plan item)."""
    from asapo_pipelines.sdk import Suggestion

    body = Suggestion(
        action="more_scans",
        target=target,
        arguments={"scans": scans, "metrics": {"epsilon_k": 1.4e-4, "target_noise": 1.2e-4}},
        reason="noise 1.4e-4 after 1 scan; the target needs 2",
        confidence=0.5,
        agent="xas.convergence-agent",
        plan={
            "name": "xas_scan",
            "kwargs": {"sample": target, "repeats": scans, "points": 2},
        },
    ).model_dump(mode="json")
    body.update(extra)
    return body


@pytest.fixture
def make_suggestion():
    return suggestion
