"""Slow and hanging units, with `pipeline worker` processes on the embedded store.

- A message the unit worked on for longer than its lease (30 s by default) was handed to
  another worker (or back to the same one) and processed twice: the worker keeps the leases of
  what it holds while the unit works, and a worker that dies still loses them.
- A finished result waited for the next message to be done (a unit that hangs never wrote it):
  a batch is committed before a message that would keep it open past its wait, and what it
  finished is committed while the unit hangs.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from procs import own, read_stream, spawn, values, wait_ok, wait_until, worker_env, write_pipeline

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.naming import group_name

from helpers import run_pipeline

HERE = Path(__file__).parent
#: short leases make the tests quick: what holds for 30 s holds for 1 s
LEASE = ("--lease-seconds", "1.0")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The slow units installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-slow-test-units",
        modules={"units.py": (HERE / "slow_units.py").read_text()},
        entry_points={"slow-tests": "asapo_slow_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return worker_env(target)


def slow_pipeline(directory: Path, count: int, work: dict[str, Any], replicas: int = 1) -> Path:
    return write_pipeline(
        directory,
        {
            "count": {
                "unit": "slow.count",
                "params": {"count": count},
                "outputs": {"numbers": "numbers"},
            },
            "work": {
                "unit": "slow.work",
                "params": work,
                "replicas": replicas,
                "inputs": {"numbers": "numbers"},
                "outputs": {"done": "done"},
            },
        },
    )


def calls(directory: Path) -> list[tuple[int, int]]:
    """(number, pid) of each call the unit got, in order."""
    path = directory / "calls.txt"
    text = path.read_text() if path.exists() else ""
    return [(int(n), int(pid)) for n, pid in (line.split() for line in text.splitlines())]


def work_status(directory: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    status = run_pipeline(
        "status",
        str(directory / "test.pipeline.yaml"),
        "--json",
        env={"PYTHONPATH": env["PYTHONPATH"]},
    )
    assert status.returncode == 0, status.stderr
    return [w for w in json.loads(status.stdout)["workers"] if w["instance"] == "work"]


def test_a_message_worked_on_past_its_lease_is_processed_once(tmp_path, env):
    # two messages, three replicas: the idle one would take a message whose lease ran out
    pipeline = slow_pipeline(tmp_path, 2, {"delay": 3.0}, replicas=3)
    source = spawn(pipeline, "count", env)
    workers = [spawn(pipeline, "work", env, *LEASE, "--replica", str(i)) for i in range(3)]
    for proc in (source, *workers):
        assert wait_ok(proc) == 0
    assert Counter(n for n, _ in calls(tmp_path)) == {1: 1, 2: 1}
    assert sorted(v["n"] for v in values(read_stream(tmp_path / "store", own("done")))) == [1, 2]
    replicas = work_status(tmp_path, env)
    assert sum(w["received"] for w in replicas) == 2
    assert sum(w["duplicates_skipped"] for w in replicas) == 0


def test_a_worker_that_dies_still_loses_its_lease(tmp_path, env):
    pipeline = slow_pipeline(tmp_path, 1, {"delay": 3.0}, replicas=2)
    source = spawn(pipeline, "count", env)
    workers = {}
    for i in range(2):
        proc = spawn(pipeline, "work", env, *LEASE, "--replica", str(i))
        workers[proc.pid] = proc
    assert wait_ok(source) == 0
    assert wait_until(lambda: calls(tmp_path), timeout=30)
    [(_, taker)] = calls(tmp_path)
    workers[taker].send_signal(signal.SIGKILL)
    assert wait_ok(workers.pop(taker)) == -signal.SIGKILL
    # the other replica gets the message once the lease runs out, and finishes it
    assert wait_until(lambda: len(calls(tmp_path)) == 2, timeout=30)
    [other] = workers.values()
    assert wait_ok(other) == 0
    assert [n for n, _ in calls(tmp_path)] == [1, 1]
    assert calls(tmp_path)[1][1] == other.pid
    assert [v["n"] for v in values(read_stream(tmp_path / "store", own("done")))] == [1]


def test_each_result_of_a_slow_unit_is_written_when_it_is_done(tmp_path, env):
    pipeline = slow_pipeline(tmp_path, 3, {"delay": 3.0})
    procs = [spawn(pipeline, "count", env), spawn(pipeline, "work", env)]
    assert [wait_ok(p) for p in procs] == [0, 0]
    written = [m.timestamp for m in read_stream(tmp_path / "store", own("done"))]
    assert len(written) == 3
    # each result written as the unit finishes it (3 s apart at least, whatever the load): not
    # two at once after the next message
    assert all(later - earlier >= 2 for earlier, later in pairwise(written)), written


def test_a_hanging_unit_does_not_hold_back_what_it_finished(tmp_path, env):
    pipeline = slow_pipeline(tmp_path, 3, {"hang_at": 2})
    store = tmp_path / "store"
    source = spawn(pipeline, "count", env)
    work = spawn(pipeline, "work", env)
    try:
        assert wait_ok(source) == 0
        assert wait_until(lambda: [n for n, _ in calls(tmp_path)] == [1, 2], timeout=30)
        # message 1's result is written and message 1 acknowledged while the unit hangs on 2
        assert wait_until(lambda: len(read_stream(store, own("done"))) == 1, timeout=10)
        assert wait_until(lambda: unacknowledged(store) == 2, timeout=10)
    finally:
        work.send_signal(signal.SIGTERM)  # the hanging call wakes, the worker stops
    assert wait_ok(work) == 0


def unacknowledged(store: Path) -> int:
    """How many messages of the unit's input its consumer group has not acknowledged."""
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(own("numbers"), "test-reader") as c,
    ):
        return c.stream_info("default").group_lag[group_name("accept", "work")]
