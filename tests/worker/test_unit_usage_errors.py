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


class PassesOn(Agent):
    """Passes its input on unchanged, as a filter between an agent and a queue bridge would."""

    def process(self, message):
        self.emit_raw("plans", message.payload, message.metadata)


def test_a_payload_passed_on_to_a_suggestion_port_is_checked_and_sent_as_it_came(as_unit):
    good = {"action": "stop", "target": "sample_A", "reason": "enough", "confidence": 0.9}
    result = run_unit(as_unit(PassesOn, kind="agent", outputs=PLANS), [good, {"action": "stop"}])
    assert result.values("plans") == [good]
    [error] = result.errors
    assert error["exception"] == USAGE_ERROR
    assert error["message"]["id"] == 2
    assert "no target (required)" in error["error"]


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


# -- the same in a real worker -----------------------------------------------------------------
class Advisor(Agent):
    def process(self, message):
        if message.value == "bad":
            self.suggest({"action": "continue", "target": "x", "reason": "r", "confidence": 1.5})
        else:
            return {"action": "stop", "target": message.value, "reason": "r", "confidence": 0.5}


def test_a_worker_sends_an_invalid_suggestion_to_the_error_stream_at_once(tmp_path, monkeypatch):
    """What `pipeline run` does with the unit: one record, one attempt, with the file's default
    of 3 retries in force; the valid suggestions go out."""
    from asapo_pipelines.sdk.runner import RetryPolicy
    from asapo_pipelines.transport import open_transport
    from asapo_pipelines.transport.formats import decode, encode
    from asapo_pipelines.worker.naming import errors_source
    from asapo_pipelines.worker.runtime import Worker

    from helpers import run_to_end

    module = types.ModuleType("usage_worker_units")
    module.Advisor = Advisor
    monkeypatch.setitem(sys.modules, module.__name__, module)
    store = {"embedded": {"path": str(tmp_path / "store")}}
    with open_transport(store) as t, t.producer("merged") as p:
        for value in ("sample_A", "bad", "sample_B"):
            p.send("default", *encode(value, "json"))
        p.finish_stream("default")
    unit = describe(
        "qa.advisor",
        kind="agent",
        summary="suggests",
        runtime="usage_worker_units:Advisor",
        inputs=[inp("merged")],
        outputs=[out("plans", SUGGESTION_CONTENT_TYPE)],
    )
    worker = Worker(
        open_transport(store),
        unit,
        {},
        pipeline="demo",
        instance="advisor",
        inputs={"merged": "merged"},
        outputs={"plans": "plans"},
        retry=RetryPolicy(retries=3),
        status_interval=0.2,
        linger=0.1,
    )
    counters = run_to_end(worker)
    assert (counters.errors, counters.retries) == (1, 0)
    with open_transport(store) as t:
        with t.consumer(errors_source("demo"), "check") as c:
            [record] = [decode(m.payload, m.metadata) for m in [c.get_by_id("advisor", 1)]]
        with t.consumer("plans", "check") as c:
            plans = [
                decode(m.payload, m.metadata) for m in map(c.get_by_id, ["default"] * 2, [1, 2])
            ]
    assert record["exception"] == USAGE_ERROR
    assert record["attempts"] == 1
    assert record["error"].startswith(
        "unit demo/advisor (qa.advisor) sent on its suggestion port 'plans' a value that is not "
        "a suggestion: action 'continue' (allowed: 'more_scans', 'stop' or 'change_parameters')"
    )
    assert [(p["target"], p["agent"]) for p in plans] == [
        ("sample_A", "qa.advisor"),
        ("sample_B", "qa.advisor"),
    ]
