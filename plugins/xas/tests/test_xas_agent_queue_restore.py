"""The convergence agent across a clean stop and a resume, with real `pipeline worker` processes
on the embedded store: the queue's statuses received before the stop (the operator rejected
the repeats it asked for) are replayed to the restarted agent after its merges, so it does not
wait for repeats that never come."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from xas_agent_procs import (
    decisions,
    plans,
    processed,
    rejected,
    run_agent,
    send,
    spawn_agent,
    write_agent_pipeline,
)
from xas_procs import stop, wait_until


def resumed_agent(directory: Path, merged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merges 1 and 2 and the rejection of the first suggestion, all acknowledged; the agent
    stopped (SIGTERM) and started again; then merge 3. Returns the plans."""
    directory.mkdir()
    pipeline = write_agent_pipeline(directory)
    store = directory / "store"
    agent = spawn_agent(pipeline)
    try:
        for count, merge in enumerate(merged[:2], start=1):
            send(store, "merged", merge, "json_arrays")
            assert wait_until(lambda c=count: len(plans(store)) >= c, procs=[agent]), directory
        send(store, "queue-status", rejected(plans(store)[0]), "json")
        assert wait_until(lambda: processed(store) >= 3, procs=[agent]), directory
    finally:
        assert stop(agent) == 0, f"log in {directory}"
    agent = spawn_agent(pipeline)
    try:
        send(store, "merged", merged[2], "json_arrays")
        assert wait_until(lambda: len(plans(store)) >= 3, procs=[agent]), directory
    finally:
        assert stop(agent) == 0, f"log in {directory}"
    return plans(store)


@pytest.fixture(scope="module")
def agents(tmp_path_factory, merges) -> dict[str, list[dict[str, Any]]]:
    base = tmp_path_factory.mktemp("agents")
    run_agent(base / "whole", merges)
    return {
        "whole": plans(base / "whole" / "store"),
        "resumed": resumed_agent(base / "resumed", merges),
    }


def test_a_resumed_agent_knows_the_repeats_the_operator_rejected_before_the_stop(agents):
    whole, resumed = agents["whole"], agents["resumed"]
    assert len(resumed) == 3
    # merge 3 decided as by an agent that never stopped: the rejected repeats are not coming
    assert resumed[2]["arguments"]["in_flight"] == whole[2]["arguments"]["in_flight"] == 0
    assert decisions(resumed) == decisions(whole), [p["reason"] for p in resumed]
