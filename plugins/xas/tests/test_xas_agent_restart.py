"""The convergence agent across a crash: real `pipeline worker` processes on the embedded store,
fed merges of real P65 repeats (merged by the plugin at test time) and the queue's statuses.

The agent is killed (SIGKILL) after its decision on a merge is written and before that merge is
acknowledged, the way a run stops with a message in flight. The restarted agent replays the
merges it decided on; the transport then delivers the one in flight again. That merge must make
no second decision, the replayed decisions keep their uids (so the queue's statuses about them
still count), and from then on the agent decides as one that never stopped."""

from __future__ import annotations

from typing import Any

import pytest
from xas_agent_procs import ADVISOR, decisions, plans, rejected, run_agent

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams


@pytest.fixture(scope="module")
def runs(tmp_path_factory, merges) -> dict[str, Any]:
    """The same messages to an agent that runs through and to one killed after merge 2."""
    base = tmp_path_factory.mktemp("agents")
    whole, _ = run_agent(base / "whole", merges)
    restarted, killed = run_agent(base / "restarted", merges, kill_after=2)
    return {
        "whole": whole,
        "restarted": restarted,
        "killed": killed,
        "whole_plans": plans(base / "whole" / "store"),
        "restarted_plans": plans(base / "restarted" / "store"),
    }


def test_a_merge_delivered_again_after_a_crash_makes_no_second_decision(runs):
    restarted, killed = runs["restarted"], runs["killed"]
    # the restarted worker counts on from the killed one's last record (merge 1, when its
    # status thread published after it, else nothing), and took merge 2 again (its decision
    # was written before the kill, its acknowledgement was not), the status and merge 3
    assert killed, "the killed agent published no status record"
    assert restarted["processed"] - killed["processed"] == 3, (restarted, killed)
    assert len(runs["restarted_plans"]) == 3
    # not even one that the worker would recognise as written before and skip
    assert restarted["duplicates_skipped"] == 0, restarted["summary"]
    # one decision after the restart, on merge 3 (the summary, too, counts on from the killed
    # agent's last one)
    before = (killed.get("summary") or {}).get("suggestions", 0)
    assert restarted["summary"]["suggestions"] - before == 1, (restarted["summary"], before)
    (decision,) = restarted["summary"]["decisions"].values()
    assert decision["merged"] == 3


def test_replayed_decisions_keep_their_uids_and_the_queue_statuses_about_them_count(runs):
    uninterrupted, after_crash = runs["whole_plans"], runs["restarted_plans"]
    # the first suggestion asked for repeats, and the operator's rejection of it counts
    assert uninterrupted[0]["arguments"]["scans"] > 0
    assert runs["whole"]["summary"]["queue_updates"] == 1
    # made before the crash, about a suggestion made before the crash, it counts after it:
    # the restarted agent made that suggestion's uid again when it replayed the merge
    assert runs["restarted"]["summary"].get("queue_updates") == 1, runs["restarted"]["summary"]
    assert len({p["uid"] for p in after_crash}) == len(after_crash)
    # every decision is the uninterrupted agent's
    assert decisions(after_crash) == decisions(uninterrupted), [p["reason"] for p in after_crash]
    # and the uids are the run's own: another run on the same merges makes others
    assert not {p["uid"] for p in after_crash} & {p["uid"] for p in uninterrupted}
    assert uninterrupted[2]["arguments"]["in_flight"] == 0  # the rejected repeats do not come


def test_statuses_replayed_after_the_merges_restore_what_the_queue_said(merges):
    """The agent's side of restoring the queue's statuses (the worker replays them after the
    merges, test_xas_agent_queue_restore.py): fed after the merges they came between, they
    reach the suggestions they name and the agent decides as one that never stopped."""
    params = ConvergenceParams(**ADVISOR)
    whole = ConvergenceAgent(params)
    first = whole.decide(merges[0])
    status = rejected(first)
    assert whole.update_queue(status)
    second = whole.decide(merges[1])
    # the bridge reports each suggestion it records (how many repeats, in what state)
    pending = {"uid": second["uid"], "state": "pending", "scans": second["arguments"]["scans"]}
    assert whole.update_queue(pending)
    expected = whole.decide(merges[2])

    # without the rejection a restored agent still counts the rejected repeats as coming
    forgetful = ConvergenceAgent(params)
    for merged in merges[:2]:
        forgetful.restore(merged)
    assert forgetful.update_queue(pending)
    assert forgetful.decide(merges[2])["arguments"] != expected["arguments"]

    restored = ConvergenceAgent(params)
    for merged in merges[:2]:
        restored.restore(merged)
    assert restored.update_queue(status)
    assert restored.update_queue(pending)
    again = restored.decide(merges[2])
    assert decisions([again]) == decisions([expected]), again["reason"]
    assert again["arguments"]["in_flight"] == expected["arguments"]["in_flight"]


def test_uids_are_unique_to_the_agents_scope_and_settings(merges):
    """The same merges make the same uids only for the same agent: another run (its scope) or
    another target is another suggestion to the queue."""

    def uids(params: dict[str, Any], scope: str) -> list[str]:
        agent = ConvergenceAgent(ConvergenceParams(**params), scope=scope)
        return [agent.decide(merged)["uid"] for merged in merges]

    first = uids(ADVISOR, "p65/r1/advisor")
    assert uids(ADVISOR, "p65/r1/advisor") == first
    assert len(set(first)) == len(merges)
    assert not set(uids(ADVISOR, "p65/r2/advisor")) & set(first)
    assert not set(uids({**ADVISOR, "target_noise": 2e-4}, "p65/r1/advisor")) & set(first)
