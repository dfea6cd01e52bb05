"""The harness runs a unit as the worker does: a unit author's test that passes must not hide
what a pipeline would do with the same unit (params' types, retries, the folder relative paths
mean)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from asapo_pipelines.sdk import Params, Processor, describe, inp, out
from asapo_pipelines.sdk.runner import UnitStartError
from asapo_pipelines.testing.harness import message, run_chain, run_unit, units_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


# -- params ----------------------------------------------------------------------------------
class SnrParams(Params):
    target_snr: float = 10.0


class Snr(Processor):
    def process(self, message):
        return {"target": self.params.target_snr}


def test_params_are_refused_as_a_pipeline_file_refuses_them(as_unit):
    """`"200"` is text in a pipeline file (`pipeline validate`: P202); a test passing it must
    fail the same way, not run the unit with 200.0."""
    unit = as_unit(Snr, params=SnrParams)
    with pytest.raises(UnitStartError) as refused:
        run_unit(unit, [1], params={"target_snr": "200"})
    assert str(refused.value) == (
        "unit qa.snr has invalid params: params.target_snr: input should be a valid number "
        "(got '200')"
    )
    assert run_unit(unit, [1], params={"target_snr": 200}).values() == [{"target": 200.0}]


# -- retries ---------------------------------------------------------------------------------
class Accumulates(Processor):
    """Adds to its running total before the step that fails (three times, then works): the
    worker's retries add it again each time."""

    def on_start(self):
        self.total = 0
        self.calls = 0

    def process(self, message):
        self.total += message.value
        self.calls += 1
        if self.calls <= 3:
            raise RuntimeError("the detector server did not answer")
        return {"total": self.total}


def test_a_unit_is_retried_as_a_pipeline_file_without_retry_retries_it(as_unit):
    """A file's default `retry: {attempts: 3}`: the unit's state shows four tries, as in a run."""
    unit = as_unit(Accumulates)
    result = run_unit(unit, [5])
    assert result.errors == []
    assert result.retries == 3
    assert result.values() == [{"total": 20}]
    once = run_unit(unit, [5], retry={"attempts": 0})
    assert [e["attempts"] for e in once.errors] == [1]
    assert once.retries == 0


def test_a_chain_unit_has_its_own_retry_section(as_unit, tmp_path):
    unit = as_unit(Accumulates)
    units = {"acc": {"unit": unit, "inputs": {"values": "in"}, "outputs": {"result": "out"}}}
    assert run_chain(units, {"in": [5]}).values("out") == [{"total": 20}]
    units["acc"]["retry"] = {"attempts": 1}
    failed = run_chain(units, {"in": [5]})
    assert [e["attempts"] for e in failed.errors] == [2]
    with pytest.raises(ValueError, match=r"^retry\.attempts: input should be a valid integer"):
        run_unit(unit, [5], retry={"attempts": "3"})


# -- the folder relative paths mean ------------------------------------------------------------
def test_a_chain_read_from_a_file_works_in_the_files_folder(tmp_path, monkeypatch):
    """`files/` and `results/files.jsonl` mean next to the file, as for `pipeline run`, wherever
    the test runs from."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(EXAMPLES / "files-to-jsonl.pipeline.yaml", project)
    shutil.copytree(EXAMPLES / "files", project / "files")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_chain(units_of(project / "files-to-jsonl.pipeline.yaml"))
    assert result.errors == []
    lines = (project / "results" / "files.jsonl").read_text().splitlines()
    names = sorted(p.name for p in (project / "files").glob("*.txt"))
    assert len(lines) == len(names) == len(result.values("raw"))
    assert list(elsewhere.iterdir()) == []
    assert Path.cwd() == elsewhere


# -- a restart -------------------------------------------------------------------------------------
class RunningSum(Processor):
    """A running total kept in memory, rebuilt by `restore` after a restart; 0 adds nothing
    and sends nothing, a negative value is refused."""

    restores_state = True

    def on_start(self):
        self.total = 0
        self.restored: list[int] = []

    def restore(self, message):
        self.total += message.value
        self.restored.append(message.value)

    def restore_sent(self, message):
        self.last_sent = message.value["total"]

    def on_restored(self):
        # the same key as the last output: sent before, so not sent again
        self.emit(None, {"total": self.total}, key=f"total-{self.total}")
        self.emit(None, {"restarted_at": self.total}, key="restart")

    def process(self, message):
        if message.value < 0:
            from asapo_pipelines.sdk import BadMessage

            raise BadMessage(f"{message.value} is negative")
        self.total += message.value
        if message.value:
            self.emit(None, {"total": self.total}, key=f"total-{self.total}")

    def summary(self):
        return {"total": self.total}


def test_a_restarted_unit_restores_its_state_as_the_worker_restores_it(as_unit, unit_harness):
    """`restarted()`: what a worker restarted after a kill does, without a store."""
    first = unit_harness(as_unit(RunningSum))
    first.send(1, 2, 0, -5, 3)
    assert first.result.values() == [{"total": 1}, {"total": 3}, {"total": 6}]
    again = first.restarted()
    unit = again.runner.unit
    # each input that made an output, then the one that made none; not the refused one
    assert unit.restored == [1, 2, 3, 0]
    assert unit.last_sent == 6
    assert again.runner.context.carried_summary == {"total": 6}
    # on_restored: the total under a key sent before is not sent again
    assert again.result.values() == [{"restarted_at": 6}]
    again.send(4)
    assert again.result.values()[-1] == {"total": 10}
    assert again.result.acknowledged == [("values", "default", 6)]


class Tally(Processor):
    """tests/worker/test_restore_unsent.py's unit: a real worker on the store, stopped and
    started again, restores it as [3, 6, 1, 2, 4, 5, 7] from the same inputs."""

    restores_state = True

    def on_start(self):
        self.seen: dict[tuple[str, int], int] = {}
        self.restored: list[int] = []

    def restore(self, message):
        self.restored.append(message.value)
        self.seen[(message.stream, message.id)] = message.value

    def process(self, message):
        if message.value == "bad":
            raise ValueError("not a number")
        self.seen[(message.stream, message.id)] = message.value
        if len(self.seen) % 3 == 0:
            self.emit(None, {"n": len(self.seen), "sum": sum(self.seen.values())})


def test_a_restart_restores_in_the_order_the_worker_does(as_unit, unit_harness):
    first = unit_harness(as_unit(Tally), retry={"attempts": 0})
    first.send(1, 2, 3, 4, "bad", 5, 6, 7)
    again = first.restarted()
    assert again.runner.unit.restored == [3, 6, 1, 2, 4, 5, 7]


class Tracking(Processor):
    """tests/worker/test_restore_ports.py's unit, whose real worker restores it in the order
    asserted below."""

    restores_state = True
    restore_ports = ("notes",)

    def on_start(self):
        self.restored: list[list[Any]] = []

    def restore(self, message):
        self.restored.append([message.port, message.stream, message.value])

    def process(self, message):
        if message.port == "numbers" or message.value == "b":
            return {"seen": message.value}
        return None


def test_a_restart_replays_the_restore_ports_as_the_worker_does(monkeypatch, unit_harness):
    module = types.ModuleType("harness_restore_ports")
    module.Tracking = Tracking
    monkeypatch.setitem(sys.modules, module.__name__, module)
    unit = describe(
        "test.tracking",
        kind="processor",
        summary="remembers notes",
        runtime="harness_restore_ports:Tracking",
        inputs=[inp("numbers"), inp("notes"), inp("chatter")],
        outputs=[out("seen")],
    )
    first = unit_harness(unit)
    # interleaved as a worker might take them; the replay goes stream by stream, by id
    first.send(
        message(1, port="numbers"),
        message("a", port="notes", stream="s1"),
        message("c", port="notes", stream="s2"),
        message(2, port="numbers"),
        message("x", port="chatter"),
        message("b", port="notes", stream="s1"),
        message(3, port="numbers"),
        message("y", port="chatter"),
    )
    assert first.restarted().runner.unit.restored == [
        ["numbers", "default", 1],
        ["numbers", "default", 2],
        ["numbers", "default", 3],
        ["chatter", "default", "x"],
        ["chatter", "default", "y"],
        ["notes", "s1", "a"],
        ["notes", "s1", "b"],
        ["notes", "s2", "c"],
    ]
