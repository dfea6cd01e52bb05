"""The convergence agent's summary counts after a restart, through the SDK's harness: the worker
replays every queue status of the run to `restore` (after the merges the agent decided on), and
one not acknowledged before the restart comes to `process` again. Each status about one of its
suggestions counts once, as in an agent that never stopped."""

from __future__ import annotations

from typing import Any

from xas_agent_procs import ADVISOR, rejected

from asapo_pipelines.sdk import Message
from asapo_pipelines.testing.harness import UnitHarness, message
from asapo_pipelines.transport.formats import encode
from asapo_pipelines.worker.naming import FIRST_STREAM

FORMATS = {"merged": "json_arrays", "queue": "json"}


def agent(carried: dict[str, Any] | None = None) -> UnitHarness:
    """The agent of one run (the same uids in every process of it), with the summary its
    predecessor published last."""
    harness = UnitHarness("xas.convergence-agent", ADVISOR, pipeline="p65", instance="advisor")
    harness.runner.context.carried_summary = dict(carried or {})
    harness.runner.context.run = {"run": "r1", "started": 1.0}
    return harness.start()


def given(port: str, value: Any, msg_id: int) -> Any:
    """A message at a fixed address: its replay and its redelivery are the same message."""
    return message(value, port=port, id=msg_id, data_source=f"{port}-in")


def replayed(port: str, value: Any, msg_id: int) -> Message:
    """The same message as the worker hands it to `restore`."""
    payload, meta = encode(value, FORMATS[port])
    return Message(port, f"{port}-in", FIRST_STREAM, msg_id, payload, meta)


def first_process(merges: list[dict[str, Any]], *, status_in_summary: bool) -> tuple[Any, Any]:
    """Merges 1 and 2, then the operator's rejection of the first suggestion; the summary its
    last status record held (with or without that status) and the status."""
    first = agent()
    first.send(given("merged", merges[0], 1), given("merged", merges[1], 2))
    before = first.runner.summary()
    status = rejected(first.result.values("plans")[0])
    first.send(given("queue", status, 1))
    carried = first.runner.summary() if status_in_summary else before
    first.shutdown()
    return carried, status


def restarted(merges, carried, status, *, redelivered: bool) -> dict[str, Any]:
    """A process restarted after the first: restored, maybe the status again, then merge 3."""
    second = agent(carried)
    unit = second.runner.unit
    for msg_id, merged in enumerate(merges[:2], start=1):
        unit.restore(replayed("merged", merged, msg_id))
    unit.restore(replayed("queue", status, 1))
    if redelivered:
        second.send(given("queue", status, 1))
    second.send(given("merged", merges[2], 3))
    return second.shutdown().summary


def uninterrupted(merges) -> dict[str, Any]:
    whole = agent()
    whole.send(given("merged", merges[0], 1), given("merged", merges[1], 2))
    whole.send(given("queue", rejected(whole.result.values("plans")[0]), 1))
    whole.send(given("merged", merges[2], 3))
    return whole.shutdown().summary


def test_a_status_restored_and_delivered_again_counts_once(merges):
    expected = uninterrupted(merges)
    assert (expected["suggestions"], expected["queue_updates"]) == (3, 1)
    # its summary was published after it, its acknowledgement was lost
    carried, status = first_process(merges, status_in_summary=True)
    assert carried["queue_updates"] == 1
    summary = restarted(merges, carried, status, redelivered=True)
    assert summary.get("queue_updates") == expected["queue_updates"], summary
    assert summary["suggestions"] == expected["suggestions"], summary


def test_a_status_processed_after_the_last_summary_counts_once(merges):
    expected = uninterrupted(merges)
    # taken and acknowledged, killed before the status record that counted it
    carried, status = first_process(merges, status_in_summary=False)
    assert "queue_updates" not in carried
    summary = restarted(merges, carried, status, redelivered=False)
    assert summary.get("queue_updates") == expected["queue_updates"], summary
    # not acknowledged either: it comes again
    summary = restarted(merges, carried, status, redelivered=True)
    assert summary.get("queue_updates") == expected["queue_updates"], summary
