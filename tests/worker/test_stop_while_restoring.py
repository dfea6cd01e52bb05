"""A SIGTERM while a unit restores its state (`pipeline stop`, a Nomad or Slurm stop, Ctrl-C
in `pipeline run`) stops the worker at the next restored message: it used to be noted only,
the worker went on restoring every input of a long run and stopped at its main loop, while
`pipeline stop` waited and then killed it. Restoring acknowledges and writes nothing, so the
next start restores everything again and processes the rest exactly once."""

from __future__ import annotations

import json
import signal
from itertools import accumulate
from pathlib import Path

import pytest
from procs import own, read_stream, spawn, values, wait_ok, wait_until, worker_env, write_pipeline

from asapo_pipelines.testing.distributions import PluginProject, install
from asapo_pipelines.transport import open_transport

HERE = Path(__file__).parent
#: inputs the first worker processes, which each later start restores
PROCESSED = 50
#: inputs that arrive after the stop, for the last start to process
LATER = 10


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The restoring unit installed as a real plugin distribution (entry point and all)."""
    root = tmp_path_factory.mktemp("plugin")
    project = PluginProject(
        "asapo-restoring-test-units",
        modules={"units.py": (HERE / "restore_units.py").read_text()},
        entry_points={"restoring-tests": "asapo_restoring_test_units.units"},
    ).write(root)
    target = root / "site"
    install([project], target)
    return worker_env(target)


def feed(store: Path, numbers: range, *, finish: bool) -> None:
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("numbers") as p:
        for n in numbers:
            p.send("default", json.dumps({"n": n}).encode(), {"format": "json"})
        if finish:
            p.finish_stream("default")


def calls(directory: Path, hook: str, pid: int) -> list[int]:
    """The numbers `hook` was called with by worker `pid`, in order."""
    path = directory / "calls.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return [int(n) for h, n, p in (line.split() for line in lines) if h == hook and int(p) == pid]


def final_status(store: Path) -> dict:
    return read_stream(store, "accept.status", "sum.0")[-1].metadata


def test_sigterm_while_restoring_stops_before_the_restore_is_half_done(tmp_path, env):
    pipeline = write_pipeline(
        tmp_path,
        {
            "sum": {
                "unit": "restoring.sum",
                "params": {"restore_delay": 0.2},
                "inputs": {"numbers": "numbers"},
                "outputs": {"sums": "sums"},
            }
        },
        streams={"numbers": {"external": True}},
    )
    store = tmp_path / "store"
    feed(store, range(1, PROCESSED + 1), finish=False)  # open: the worker waits for more
    first = spawn(pipeline, "sum", env)
    assert wait_until(lambda: len(read_stream(store, own("sums"))) == PROCESSED, timeout=240)
    first.send_signal(signal.SIGTERM)
    assert wait_ok(first) == 0
    before = final_status(store)
    assert before["state"] == "stopped"
    assert before["summary"] == {"total": sum(range(1, PROCESSED + 1)), "restored": 0}

    # the second start restores the 50 inputs, 0.2 s each: stopped after its first few
    log = tmp_path / "second.log"
    second = spawn(pipeline, "sum", env, log=log)
    assert wait_until(lambda: len(calls(tmp_path, "restore", second.pid)) >= 2, timeout=240)
    second.send_signal(signal.SIGTERM)
    assert wait_ok(second) == 0
    restored = calls(tmp_path, "restore", second.pid)
    assert len(restored) < PROCESSED / 2, f"restored {len(restored)} of {PROCESSED} after SIGTERM"
    assert calls(tmp_path, "process", second.pid) == []
    assert len(read_stream(store, own("sums"))) == PROCESSED  # it wrote nothing
    after = final_status(store)
    # stopped as a stop in the main loop ends, with the summary the unit had before (not the
    # sum of a half-restored state)
    assert after["state"] == "stopped"
    assert after["summary"] == before["summary"]
    assert after["processed"] == before["processed"] == PROCESSED
    said = f"accept/sum stopped while restoring its state: {len(restored)} of {PROCESSED} inputs"
    assert f"{said} restored; its next start restores them all again" in log.read_text()

    # the next start restores all 50 again and processes the rest, each once
    feed(store, range(PROCESSED + 1, PROCESSED + LATER + 1), finish=True)
    third = spawn(pipeline, "sum", env)
    assert wait_ok(third) == 0
    assert calls(tmp_path, "restore", third.pid) == list(range(1, PROCESSED + 1))
    numbers = range(1, PROCESSED + LATER + 1)
    assert calls(tmp_path, "process", third.pid) == list(numbers[PROCESSED:])
    assert values(read_stream(store, own("sums"))) == [
        {"n": n, "total": total} for n, total in zip(numbers, accumulate(numbers), strict=True)
    ]
    assert final_status(store)["state"] == "finished"


def test_sigterm_while_the_unit_starts_skips_its_restore(tmp_path, env):
    """A stop asked while the unit's runtime was imported (`on_start` here) ends the worker
    before the first `restore`: it used to restore every input first."""
    hold = tmp_path / "go"
    pipeline = write_pipeline(
        tmp_path,
        {
            "sum": {
                "unit": "restoring.sum",
                "params": {"hold": str(hold)},
                "inputs": {"numbers": "numbers"},
                "outputs": {"sums": "sums"},
            }
        },
        streams={"numbers": {"external": True}},
    )
    store = tmp_path / "store"
    feed(store, range(1, PROCESSED + 1), finish=False)
    hold.touch()
    first = spawn(pipeline, "sum", env)
    assert wait_until(lambda: len(read_stream(store, own("sums"))) == PROCESSED, timeout=240)
    first.send_signal(signal.SIGTERM)
    assert wait_ok(first) == 0
    hold.unlink()
    log = tmp_path / "second.log"
    second = spawn(pipeline, "sum", env, log=log)
    try:
        assert wait_until(lambda: calls(tmp_path, "start", second.pid) == [0], timeout=240)
        second.send_signal(signal.SIGTERM)
    finally:
        hold.touch()
    assert wait_ok(second) == 0
    assert calls(tmp_path, "restore", second.pid) == []
    assert final_status(store)["state"] == "stopped"
    assert (
        "accept/sum stopped while restoring its state, before it had counted the inputs to "
        "restore; its next start restores them all"
    ) in log.read_text()
