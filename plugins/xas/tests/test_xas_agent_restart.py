"""The convergence agent across a crash: real `pipeline worker` processes on the embedded store,
fed merges of real P65 repeats (merged by the plugin at test time) and the queue's statuses.

The agent is killed (SIGKILL) after its decision on a merge is written and before that merge is
acknowledged, the way a run stops with a message in flight. The restarted agent replays the
merges it decided on; the transport then delivers the one in flight again. That merge must make
no second decision, the replayed decisions keep their uids (so the queue's statuses about them
still count), and from then on the agent decides as one that never stopped."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xas_procs import PIPELINE, last_status, read, stop, wait_until
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.agent import ConvergenceAgent
from asapo_pipelines_xas.params import ConvergenceParams, NormalizeParams

NORMALIZE = {
    "mode": "transmission",
    "autobk": {"rbkg": 1, "kweight": 2},
    "noise": {"rmin": 15, "rmax": 25, "kweight": 2, "kmin": 2},
}
#: a target three repeats do not reach, above any floor their merges could show: the agent
#: asks for scans after each merge
ADVISOR = {"target_noise": 1.5e-4, "max_scans": 20}
#: the counter columns of the P65 files (VFC01..VFC04)
COUNTERS = range(10, 14)
NAME = "xas-agent-restart"

#: imported by the first agent worker only (PYTHONPATH): the agent's flush, which the worker
#: calls after writing a batch's outputs and before acknowledging its inputs, kills the process
#: once it has decided `XAS_TEST_KILL_AFTER` merges
KILLER = """
import os
import signal

if os.environ.get("XAS_TEST_KILL_AFTER"):
    from asapo_pipelines_xas import units

    def flush(self):
        if self.count >= int(os.environ["XAS_TEST_KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)

    units.ConvergenceAgent.flush = flush
"""


def write_repeat(directory: Path, index: int) -> Path:
    """Repeat `index`: a P65 scan with its counts changed by 0.02 % (another measurement)."""
    source = (DATA / P65_SCANS[index % len(P65_SCANS)]).read_text().splitlines()
    rng = np.random.default_rng(index)
    lines = []
    for line in source:
        if line.startswith("#") or not line.strip():
            lines.append(line)
            continue
        cells = line.split()
        for i in COUNTERS:
            cells[i] = repr(float(cells[i]) * (1 + 2e-4 * rng.standard_normal()))
        lines.append(" ".join(cells))
    directory.mkdir(exist_ok=True)
    path = directory / f"20K_GOE_Fe_K_240.{index:05d}.xdi"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def merges(tmp_path_factory) -> list[dict[str, Any]]:
    """The merge the plugin sends after each of three repeats, in order."""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.readers import read_scan

    directory = tmp_path_factory.mktemp("repeats")
    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger()
    return [
        merger.add(normalize_scan(read_scan(write_repeat(directory, i)), params)).to_json()
        for i in range(3)
    ]


def write_pipeline(directory: Path) -> Path:
    """The agent alone; its merges and the queue's statuses come from outside (the test)."""
    doc = {
        "pipeline": NAME,
        "transport": {"embedded": {"path": "store"}},
        "streams": {
            "merged": {"external": True, "content_type": "xas/merged", "format": "json_arrays"},
            "queue-status": {"external": True, "content_type": "plan/status", "format": "json"},
        },
        "units": {
            "advisor": {
                "unit": "xas.convergence-agent",
                "params": ADVISOR,
                "inputs": {"merged": "merged", "queue": "queue-status"},
                "outputs": {"plans": "plans"},
            }
        },
    }
    path = directory / f"{NAME}.pipeline.yaml"
    path.write_text(json.dumps(doc, indent=2))
    return path


def spawn_agent(pipeline: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    environ.update(env, ASAPO_PIPELINES_CACHE_DIR=str(pipeline.parent / "cache"))
    log = open(pipeline.parent / "advisor.log", "ab")  # noqa: SIM115  (the process holds it)
    # a short lease: the merge in flight at the kill comes back within seconds
    lease = ("--lease-seconds", "2")
    return subprocess.Popen(
        [PIPELINE, "worker", str(pipeline), "advisor", "--status-interval", "0.2", *lease],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=pipeline.parent,
    )


def send(store: Path, source: str, value: Any, fmt: str) -> None:
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.transport.formats import encode

    payload, metadata = encode(value, fmt)
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer(source) as p:
        p.send("default", payload, metadata)


def plans(store: Path) -> list[dict[str, Any]]:
    return [value for _, value in read(store, "plans")]


def processed(store: Path) -> int:
    try:
        return int(last_status(store, NAME, "advisor").get("processed") or 0)
    except Exception:  # no status record yet
        return 0


def rejected(plan: dict[str, Any]) -> dict[str, Any]:
    """The queue's word that the operator rejected a suggestion (bluesky.queue's `status`)."""
    scans = plan["arguments"]["scans"]
    return {"uid": plan["uid"], "target": plan["target"], "state": "rejected", "scans": scans}


def decisions(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What each suggestion decided; not its uid, which is unique to its run (two runs on the
    same merges must not make the same uids)."""
    return [
        (p["action"], p["arguments"].get("scans"), p["arguments"].get("in_flight")) for p in found
    ]


def run_agent(directory: Path, merges: list[dict[str, Any]], *, kill_after: int = 0) -> Any:
    """Merges 1 and 2, the operator's rejection of the first suggestion, merge 3; with
    `kill_after`, the agent is killed once after that many decisions and started again.
    Returns the final status record of the agent that ran last."""
    directory.mkdir()
    pipeline = write_pipeline(directory)
    store = directory / "store"
    env: dict[str, str] = {}
    if kill_after:
        (directory / "killer").mkdir()
        (directory / "killer" / "sitecustomize.py").write_text(KILLER)
        env = {"PYTHONPATH": str(directory / "killer"), "XAS_TEST_KILL_AFTER": str(kill_after)}
    agent = spawn_agent(pipeline, **env)
    try:
        for count, merged in enumerate(merges[:2], start=1):
            send(store, "merged", merged, "json_arrays")
            assert wait_until(lambda c=count: len(plans(store)) >= c, procs=[agent]), (
                f"no decision on merge {count}; log in {directory}"
            )
        if kill_after:
            assert agent.wait(60) < 0, "the agent was not killed"
            # its decision on merge 2 is written, merge 2 is not acknowledged: it comes back
            agent = spawn_agent(pipeline)
            assert wait_until(lambda: processed(store) >= 1, procs=[agent]), directory
        send(store, "queue-status", rejected(plans(store)[0]), "json")
        before = processed(store)
        assert wait_until(lambda: processed(store) > before, procs=[agent]), directory
        send(store, "merged", merges[2], "json_arrays")
        assert wait_until(lambda: len(plans(store)) >= 3, procs=[agent]), directory
    finally:
        assert stop(agent) == 0, f"log in {directory}"
    return last_status(store, NAME, "advisor")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, merges) -> dict[str, Any]:
    """The same messages to an agent that runs through and to one killed after merge 2."""
    base = tmp_path_factory.mktemp("agents")
    return {
        "whole": run_agent(base / "whole", merges),
        "restarted": run_agent(base / "restarted", merges, kill_after=2),
        "whole_plans": plans(base / "whole" / "store"),
        "restarted_plans": plans(base / "restarted" / "store"),
    }


def test_a_merge_delivered_again_after_a_crash_makes_no_second_decision(runs):
    restarted = runs["restarted"]
    # the restarted worker took merge 2 again (its decision was written before the kill, its
    # acknowledgement was not), the status and merge 3
    assert restarted["processed"] == 3, restarted
    assert len(runs["restarted_plans"]) == 3
    # not even one that the worker would recognise as written before and skip
    assert restarted["duplicates_skipped"] == 0, restarted["summary"]
    # one decision after the restart, on merge 3
    assert restarted["summary"]["suggestions"] == 1, restarted["summary"]
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

    # without the statuses a restored agent still counts the rejected repeats as coming
    forgetful = ConvergenceAgent(params)
    for merged in merges[:2]:
        forgetful.restore(merged)
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
