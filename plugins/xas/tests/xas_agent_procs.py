"""The convergence agent as real `pipeline worker` processes on the embedded store, fed from
the test: merges of real P65 scans (or of noisy copies of them, normalised and merged by the
plugin at test time) and the queue server's statuses. Shared by the agent's restart, resume and
floor tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from xas_procs import PIPELINE, last_status, read, stop, wait_until
from xas_testdata import DATA, P65_SCANS

from asapo_pipelines_xas.params import NormalizeParams

#: the P65 example's normalisation (examples/p65-xas.pipeline.yaml)
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


def noisy_copy(directory: Path, index: int, relative: float, source: str | None = None) -> Path:
    """Another measurement of a P65 scan (`source`, else the bundled scans in turn): its counts
    changed by `relative` (standard deviation, seeded by `index`) at every point. The scan's own
    noise is in every copy of it (shared); the added noise is each copy's own."""
    name = source or P65_SCANS[index % len(P65_SCANS)]
    rng = np.random.default_rng(index)
    lines = []
    for line in (DATA / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
            continue
        cells = line.split()
        for i in COUNTERS:
            cells[i] = repr(float(cells[i]) * (1 + relative * rng.standard_normal()))
        lines.append(" ".join(cells))
    directory.mkdir(exist_ok=True)
    path = directory / f"20K_GOE_Fe_K_240.{index:05d}.xdi"
    path.write_text("\n".join(lines) + "\n")
    return path


def merges_of(paths: list[Path]) -> list[dict[str, Any]]:
    """The merge the plugin sends after each scan file, in order (normalised as the P65
    example, merged with xraylarch)."""
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.readers import read_scan

    params = NormalizeParams.model_validate(NORMALIZE)
    merger = Merger()
    return [merger.add(normalize_scan(read_scan(p), params)).to_json() for p in paths]


def write_agent_pipeline(directory: Path) -> Path:
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


def run_agent(
    directory: Path, merges: list[dict[str, Any]], *, kill_after: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merges 1 and 2, the operator's rejection of the first suggestion, merge 3; with
    `kill_after`, the agent is killed once after that many decisions and started again.
    Returns the final status record of the agent that ran last, and the last record of the
    killed one ({} without a kill): the restarted agent counts on from it, and what it holds
    depends on when the killed one's status thread last published (merge 1 or nothing)."""
    directory.mkdir()
    pipeline = write_agent_pipeline(directory)
    store = directory / "store"
    env: dict[str, str] = {}
    killed: dict[str, Any] = {}
    if kill_after:
        (directory / "killer").mkdir()
        (directory / "killer" / "sitecustomize.py").write_text(KILLER)
        env = {"PYTHONPATH": str(directory / "killer"), "XAS_TEST_KILL_AFTER": str(kill_after)}
    agent = spawn_agent(pipeline, **env)
    # the inputs the agent running now has counted once merges 1 and 2 are processed
    done = 2
    try:
        for count, merged in enumerate(merges[:2], start=1):
            send(store, "merged", merged, "json_arrays")
            assert wait_until(lambda c=count: len(plans(store)) >= c, procs=[agent]), (
                f"no decision on merge {count}; log in {directory}"
            )
        if kill_after:
            assert agent.wait(60) < 0, "the agent was not killed"
            killed = last_status(store, NAME, "advisor")
            # its decision on merge 2 is written, merge 2 is not acknowledged: it comes back,
            # counted on top of the killed agent's last record
            agent = spawn_agent(pipeline)
            carried = int(killed.get("processed") or 0)
            done = carried + 1  # merge 1 (when its record counted it) and merge 2 again
            assert wait_until(lambda: processed(store) >= done, procs=[agent]), directory
        send(store, "queue-status", rejected(plans(store)[0]), "json")
        # the status processed: a count to reach, not "more than when it was sent", which a
        # record published before it was read could already hold (a 120 s wait for nothing)
        assert wait_until(lambda: processed(store) >= done + 1, procs=[agent]), directory
        send(store, "merged", merges[2], "json_arrays")
        assert wait_until(lambda: len(plans(store)) >= 3, procs=[agent]), directory
    finally:
        assert stop(agent) == 0, f"log in {directory}"
    return last_status(store, NAME, "advisor"), killed
