"""A worker killed mid-batch: its successor is handed the batch again. `pipeline status` said
`processed 3060` for 3000 inputs: the killed worker had counted the batch, and its successor
counted it again. Each input is now counted as processed once, when it is acknowledged, and
what was handed out again is counted apart, as `redelivered`."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from procs import read_stream, spawn, wait_ok, wait_until, worker_env, write_pipeline

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport import open_transport

from helpers import run_pipeline

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-redelivery-test-units",
        modules={"units.py": (HERE / "redelivery_units.py").read_text()},
        entry_points={"redelivery-tests": "asapo_redelivery_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return worker_env(target)


def feed(store: Path, numbers: list[int]) -> int:
    """The inputs, on a finished external stream; how many were sent."""
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in numbers:
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        p.finish_stream("default")
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer("numbers", "x") as c:
        return int(c.stream_info("default").message_count or 0)


def last_record(store: Path) -> dict[str, Any]:
    records = read_stream(store, "accept.status", "hold.0")
    return dict(records[-1].metadata) if records else {}


def test_a_batch_handed_out_again_after_a_kill_is_counted_once_as_processed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    numbers = list(range(1, 41))
    units = {
        "hold": {
            "unit": "redo.hold",
            "params": {"hold_at": numbers[-1], "marker": str(tmp_path / "held.marker")},
            "inputs": {"numbers": "numbers"},
            "batch": {"messages": 16, "wait": 1.0},
        }
    }
    pipeline = write_pipeline(tmp_path, units, streams={"numbers": {"external": True}})
    store = tmp_path / "store"
    inputs = feed(store, numbers)
    lease = ("--lease-seconds", "4")
    worker = spawn(pipeline, "hold", env, *lease)
    try:
        # every input handed to the unit, the last batch's commit hanging, and a status
        # record published since: the worker is killed with a batch not acknowledged
        assert wait_until(lambda: (tmp_path / "held.marker").exists()), "it never held"
        assert wait_until(lambda: last_record(store).get("received") == inputs)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert wait_ok(spawn(pipeline, "hold", env, *lease)) == 0

    status = run_pipeline("status", str(pipeline), "--json", env={"PYTHONPATH": env["PYTHONPATH"]})
    assert status.returncode == 0, status.stderr
    [hold] = [w for w in json.loads(status.stdout)["workers"] if w["instance"] == "hold"]
    assert hold["state"] == "finished", hold
    assert hold["processed"] == inputs, hold
    assert hold["redelivered"] > 0, hold
    # what the unit was handed: every input, and the batch the killed worker held again
    assert hold["received"] == inputs + hold["redelivered"], hold

    table = run_pipeline("status", str(pipeline), env={"PYTHONPATH": env["PYTHONPATH"]})
    assert table.returncode == 0, table.stderr
    assert "redelivered" in table.stdout, table.stdout
