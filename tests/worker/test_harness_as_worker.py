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
from asapo_pipelines.testing.harness import run_chain, run_unit, units_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def as_unit(monkeypatch: pytest.MonkeyPatch):
    """A descriptor for a runtime class defined in the test (its module made importable)."""

    def make(cls: type, *, kind: str = "processor", outputs: Any = None, params: Any = None):
        module = types.ModuleType(f"harness_units_{cls.__name__.lower()}")
        setattr(module, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return describe(
            f"qa.{cls.__name__.lower()}",
            kind=kind,
            summary="a unit of the harness tests",
            runtime=f"{module.__name__}:{cls.__name__}",
            inputs=[inp("values")],
            outputs=outputs if outputs is not None else [out("result")],
            **({"params": params} if params is not None else {}),
        )

    return make


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
