"""What a unit sends that its port cannot take is a UnitUsageError said in one sentence, at
once (a retry would send the same): a value on a suggestion port that is not a suggestion,
however it was sent, and a value JSON cannot hold, with where in it."""

from __future__ import annotations

import json
import sys
import types
from typing import Any

import pytest

from asapo_pipelines.sdk import SUGGESTION_CONTENT_TYPE, Agent, Processor, describe, inp, out
from asapo_pipelines.testing.harness import run_unit

USAGE_ERROR = "asapo_pipelines.sdk.units.UnitUsageError"


@pytest.fixture
def as_unit(monkeypatch: pytest.MonkeyPatch):
    """A descriptor for a runtime class defined in the test (its module made importable)."""

    def make(cls: type, *, kind: str = "processor", outputs: Any = None):
        module = types.ModuleType(f"usage_units_{cls.__name__.lower()}")
        setattr(module, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)
        return describe(
            f"qa.{cls.__name__.lower()}",
            kind=kind,
            summary="a unit of the usage error tests",
            runtime=f"{module.__name__}:{cls.__name__}",
            inputs=[inp("values")],
            outputs=outputs if outputs is not None else [out("result")],
        )

    return make


# -- suggestions -------------------------------------------------------------------------------
class BadSuggestion(Agent):
    def process(self, message):
        self.suggest({"action": "continue", "target": "x", "reason": "r", "confidence": 1.5})


class ReturnsAnything(Agent):
    def process(self, message):
        return {"foo": 1}


class EmitsHalf(Agent):
    def process(self, message):
        self.emit("plans", {"action": "stop"})


class ReturnsOne(Agent):
    def process(self, message):
        return {"action": "stop", "target": "sample_A", "reason": "enough", "confidence": 0.9}


PLANS = [out("plans", SUGGESTION_CONTENT_TYPE)]


def test_an_invalid_suggestion_is_a_usage_error_said_in_one_sentence(as_unit):
    result = run_unit(as_unit(BadSuggestion, kind="agent", outputs=PLANS), [1])
    [error] = result.errors
    assert error["exception"] == USAGE_ERROR
    assert error["attempts"] == 1  # a retry would suggest the same
    assert result.retries == 0
    assert error["error"] == (
        "unit test/unit (qa.badsuggestion) sent on its suggestion port 'plans' a value that is "
        "not a suggestion: action 'continue' (allowed: 'more_scans', 'stop' or "
        "'change_parameters'); confidence 1.5 (must be from 0 to 1) (a suggestion has action, "
        "target, reason and confidence, and may have arguments and plan)"
    )


@pytest.mark.parametrize(
    ("cls", "said"),
    [
        (ReturnsAnything, "no action (required); no target (required)"),
        (EmitsHalf, "not a suggestion: no target (required); no reason (required)"),
    ],
)
def test_whatever_goes_out_on_a_suggestion_port_is_a_suggestion(as_unit, cls, said):
    result = run_unit(as_unit(cls, kind="agent", outputs=PLANS), [1])
    assert result.values("plans") == []
    [error] = result.errors
    assert error["exception"] == USAGE_ERROR
    assert said in error["error"]


def test_a_returned_suggestion_goes_out_as_suggest_sends_it(as_unit):
    result = run_unit(as_unit(ReturnsOne, kind="agent", outputs=PLANS), [1])
    assert result.errors == []
    [sent] = result.on("plans")
    assert sent.value["agent"] == "qa.returnsone"
    assert sent.value["uid"]
    assert sent.value["time"]
    assert sent.metadata["kind"] == "suggestion"


# -- outputs JSON cannot hold ----------------------------------------------------------------------
class TwentyFields(Processor):
    def process(self, message):
        fields: dict[str, Any] = {f"f{n}": n for n in range(18)}
        if message.value == "nan":
            return {**fields, "snr": float("nan"), "a": {"b": [1.0]}}
        return {**fields, "a": {"b": [1, 2, 3, {4}]}}


@pytest.mark.parametrize(
    ("value", "where"), [("nan", "(snr is nan)"), ("set", "(a.b[3] is a set)")]
)
def test_an_output_json_cannot_hold_names_the_field(as_unit, value, where):
    result = run_unit(as_unit(TwentyFields), [value])
    [error] = result.errors
    assert f"a value of type dict that cannot be encoded {where}: value cannot" in error["error"]
    json.dumps(error)  # the record itself goes out as JSON
