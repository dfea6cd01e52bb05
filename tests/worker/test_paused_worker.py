"""A worker paused past its leases (SIGSTOP here; a stalled host or VM, swapping, a call that
keeps the lease watch from running): the group hands its messages to another worker, which
processes them. When the paused one goes on, it used to write its outputs of those messages as
well, and acknowledge and count them: one input, two outputs downstream, `processed` above the
inputs. It now leaves them to the worker that has them, and says so in its log."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from procs import own, read_stream, spawn, wait_ok, wait_until, worker_env, write_pipeline

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport import open_transport

HERE = Path(__file__).parent
LEASE = 2.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-worker-test-units",
        modules={"units.py": (HERE / "sample_units.py").read_text()},
        entry_points={"worker-tests": "asapo_worker_test_units.units"},
    ).write(root)
    install([project], root / "site")
    return worker_env(root / "site")


def status(store: Path, instance: str) -> dict:
    try:
        records = read_stream(store, "accept.status", instance)
    except Exception:  # not written yet
        return {}
    return dict(records[-1].metadata) if records else {}


def test_a_worker_paused_past_its_lease_leaves_its_batch_to_the_worker_that_took_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    numbers = list(range(1, 31))
    units = {
        "tag": {
            "unit": "test.tag",
            "params": {"sleep": 0.2},
            "inputs": {"numbers": "numbers"},
            "outputs": {"tagged": "tagged"},
            # a long batch wait: what the paused worker processed is still its own to commit
            "batch": {"messages": 1000, "wait": 30.0},
            "replicas": 2,
        }
    }
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in numbers:
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")
    lease = ("--lease-seconds", str(LEASE))
    paused = spawn(pipeline, "tag", env, *lease, log=tmp_path / "paused.log")
    other = None
    try:
        assert wait_until(lambda: (status(store, "tag.0").get("received") or 0) >= 3)
        os.kill(paused.pid, signal.SIGSTOP)
        # its leases run out while it is stopped; the other replica takes what it held
        other = spawn(pipeline, "tag", env, *lease, "--replica", "1", log=tmp_path / "other.log")
        assert wait_until(lambda: status(store, "tag.1").get("state") == "finished", 120)
        assert status(store, "tag.1")["redelivered"] >= 1
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    assert wait_ok(paused) == 0
    assert wait_ok(other) == 0

    outputs = read_stream(store, own("tagged"))
    inputs = [m.metadata["provenance"]["inputs"][0]["id"] for m in outputs]
    assert sorted(inputs) == numbers  # each input's output once
    counts = [status(store, f"tag.{r}") for r in (0, 1)]
    assert sum(c["processed"] for c in counts) == len(numbers), counts
    assert sum(c["outputs"] for c in counts) == len(numbers), counts
    log = (tmp_path / "paused.log").read_text()
    assert "went to another worker of the group while this one held them past their" in log
    assert "Traceback" not in log
