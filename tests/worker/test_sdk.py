"""The unit SDK and the in-process harness: what a unit author's tests see."""

# fixtures are imported from worker_fixtures by name, and pytest passes them as arguments
# ruff: noqa: F811

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from worker_fixtures import run_unit, sample_catalog, unit_harness, unit_message  # noqa: F401

from asapo_pipelines.sdk import PlanItem, Suggestion, describe, inp, out
from asapo_pipelines.sdk.runner import UnitStartError
from asapo_pipelines.testing.harness import UnitHarness, message


def test_processor_outputs_carry_provenance_and_inputs_are_acknowledged(run_unit, sample_catalog):
    result = run_unit("test.tag", [{"n": 1}, {"n": 2}], catalog=sample_catalog)
    assert result.values("tagged") == [{"n": 1, "tagged": True}, {"n": 2, "tagged": True}]
    assert result.acknowledged == [("numbers", "default", 1), ("numbers", "default", 2)]
    prov = result.outputs[1].provenance
    assert prov["inputs"] == [{"data_source": "numbers-in", "stream": "default", "id": 2}]
    assert prov["port"] == "tagged"
    # the key is derived from the input, so processing it again gives the same key
    again = run_unit("test.tag", [{"n": 1}, {"n": 2}], catalog=sample_catalog)
    assert [o.provenance["key"] for o in again.outputs] == [
        o.provenance["key"] for o in result.outputs
    ]
    assert result.finished == [("tagged", "default", None)]


def test_failures_go_to_errors_with_traceback_and_processing_goes_on(run_unit, sample_catalog):
    values = [{"n": n} for n in range(1, 8)]
    result = run_unit("test.tag", values, params={"fail_every": 3}, catalog=sample_catalog)
    assert [v["n"] for v in result.values()] == [1, 2, 4, 5, 7]
    assert [e["message"]["id"] for e in result.errors] == [3, 6]
    first = result.errors[0]
    assert first["exception"] == "builtins.ValueError"
    assert first["error"] == "cannot tag 3"
    assert "Traceback (most recent call last)" in first["traceback"]
    assert "raise ValueError" in first["traceback"]
    # failed messages are acknowledged too: they are on the error stream, not lost
    assert len(result.acknowledged) == 7


def test_retry_policy_retries_before_giving_up(run_unit, sample_catalog):
    values = [{"n": n} for n in range(1, 5)]
    flaky = run_unit(
        "test.tag",
        values,
        params={"fail_every": 2, "fail_attempts": 1},
        retry={"attempts": 1, "delay": 0.5},
        catalog=sample_catalog,
    )
    # each failing message succeeds on its second attempt: no error, exactly one output each
    assert flaky.errors == []
    assert [v["n"] for v in flaky.values()] == [1, 2, 3, 4]
    assert flaky.retries == 2
    hopeless = run_unit(
        "test.tag",
        values,
        params={"fail_every": 2},
        retry={"attempts": 2},
        catalog=sample_catalog,
    )
    assert [e["attempts"] for e in hopeless.errors] == [3, 3]
    assert hopeless.retries == 4


def test_a_bad_message_goes_to_the_error_stream_without_retries(run_unit, sample_catalog):
    # the message is at fault: retrying it would fail the same way, after the delays
    result = run_unit(
        "test.tag",
        [{"n": n} for n in range(1, 5)],
        params={"fail_every": 2, "fail_attempts": 1, "bad_message": True},
        retry={"attempts": 2, "delay": 0.5},
        catalog=sample_catalog,
    )
    assert [e["attempts"] for e in result.errors] == [1, 1]  # it would pass a second try
    assert [e["exception"] for e in result.errors] == ["asapo_pipelines.sdk.units.BadMessage"] * 2
    assert result.retries == 0
    assert [v["n"] for v in result.values()] == [1, 3]


def test_multiple_output_ports(run_unit, sample_catalog):
    result = run_unit("test.split", [{"n": n} for n in range(1, 6)], catalog=sample_catalog)
    assert [v["n"] for v in result.values("odd")] == [1, 3, 5]
    assert [v["n"] for v in result.values("even")] == [2, 4]
    assert sorted(result.finished) == [("even", "default", None), ("odd", "default", None)]


def test_stream_hooks_see_each_scan(unit_harness, unit_message, sample_catalog):
    h = unit_harness("test.total", catalog=sample_catalog)
    h.send(unit_message({"n": 1}, stream="scan-1"), unit_message({"n": 2}, stream="scan-1"))
    h.send(unit_message({"n": 10}, stream="scan-2"))
    assert h.result.outputs == []
    h.end_stream("scan-1", next_stream="scan-2")
    h.end_stream("scan-2")
    assert h.result.values("totals") == [
        {"scan": "scan-1", "total": 3},
        {"scan": "scan-2", "total": 10},
    ]
    assert [o.stream for o in h.result.outputs] == ["scan-1", "scan-2"]
    assert ("totals", "scan-1", "scan-2") in h.result.finished


def test_source_with_scans(sample_catalog):
    result = UnitHarness("test.numbers", {"count": 5, "scan_size": 2}, catalog=sample_catalog).run()
    assert [(o.stream, o.value["n"]) for o in result.outputs] == [
        ("default", 1),
        ("default", 2),
        ("scan-2", 3),
        ("scan-2", 4),
        ("scan-3", 5),
    ]
    assert result.finished == [
        ("numbers", "default", "scan-2"),
        ("numbers", "scan-2", "scan-3"),
        ("numbers", "scan-3", None),
    ]
    assert result.outputs[0].provenance["key"].endswith("|numbers|key:1")


def test_agent_suggestions_follow_the_schema(run_unit, sample_catalog):
    result = run_unit(
        "test.advisor",
        [{"scan": "scan-1", "total": 40}, {"scan": "scan-2", "total": 400}],
        catalog=sample_catalog,
    )
    more, stop = (Suggestion.model_validate(v) for v in result.values("plans"))
    assert more.action == "more_scans"
    assert stop.action == "stop"
    assert more.agent == "test.advisor"
    item = more.queue_item()
    assert item is not None
    assert (item["name"], item["args"], item["kwargs"], item["item_type"]) == (
        "count",
        [["det"]],
        {"num": 2},
        "plan",
    )
    assert item["meta"]["suggestion"]["confidence"] == 0.8
    assert stop.queue_item() is None


def test_suggestion_schema_rejects_nonsense():
    with pytest.raises(ValidationError, match="confidence"):
        Suggestion(action="stop", target="s", reason="r", confidence=1.5)
    with pytest.raises(ValidationError, match="action"):
        Suggestion(action="dance", target="s", reason="r", confidence=0.5)
    with pytest.raises(ValidationError, match="cannot carry a measurement plan"):
        Suggestion(
            action="stop", target="s", reason="r", confidence=0.5, plan=PlanItem(name="scan")
        )
    wrapped = Suggestion.from_plan_item(
        {"name": "scan", "args": [["det"], "motor", 1, 5, 10], "kwargs": {}, "item_type": "plan"},
        target="sample-3",
        reason="uncertain region",
        confidence=0.6,
    )
    assert wrapped.arguments["args"][1] == "motor"
    json.dumps(wrapped.model_dump(mode="json"))


def test_jsonl_sink_writes_a_redelivered_message_once(tmp_path, run_unit):
    path = tmp_path / "out" / "messages.jsonl"
    prov = {"key": "up|port|raw/default/1|0", "unit": "up"}
    first = message(
        payload=b"hello", raw=True, id=1, metadata={"format": "bytes", "provenance": prov}
    )
    again = message(
        payload=b"hello",
        raw=True,
        id=1,
        delivery_count=2,
        metadata={"format": "bytes", "provenance": prov},
    )
    # the same output re-sent by a restarted upstream arrives with a new id
    resent = message(
        payload=b"hello", raw=True, id=7, metadata={"format": "bytes", "provenance": prov}
    )
    other = message(payload=b"world", raw=True, id=2, metadata={"format": "bytes"})
    result = run_unit(
        "core.jsonl-sink",
        [first, again, resent, other],
        params={"path": str(path), "payload": "text"},
    )
    assert len(result.acknowledged) == 4
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["payload"] for line in lines] == ["hello", "world"]
    # a crash left half a line: the next run repairs it and still writes each message once
    with path.open("a") as f:
        f.write('{"data_source": "x", "str')
    run_unit("core.jsonl-sink", [first, other], params={"path": str(path), "payload": "text"})
    lines = path.read_text().splitlines()
    assert len(lines) == 2


def test_files_source_reads_directory_in_order(tmp_path, run_unit):
    for name in ("b.dat", "a.dat", "c.txt"):
        (tmp_path / name).write_bytes(name.encode())
    result = run_unit("core.files", params={"directory": str(tmp_path), "pattern": "*.dat"})
    assert [o.metadata["name"] for o in result.outputs] == ["a.dat", "b.dat"]
    assert [bytes(o.value) for o in result.outputs] == [b"a.dat", b"b.dat"]
    assert result.outputs[0].provenance["key"].endswith("key:a.dat")


def test_files_source_watch_mode_sends_settled_files_until_stopped(tmp_path, unit_harness):
    import threading

    (tmp_path / "first.dat").write_bytes(b"1")
    h = unit_harness(
        "core.files", {"directory": str(tmp_path), "watch": True, "settle_seconds": 0.1}
    )
    names: list[str] = []
    seen = threading.Event()

    def collect(out):
        names.append(out.metadata["name"])
        if out.metadata["name"] == "second.dat":
            seen.set()

    h.start()
    runner = threading.Thread(target=lambda: h.runner.run_source(collect))
    runner.start()
    (tmp_path / "second.dat").write_bytes(b"22")
    assert seen.wait(20)
    h.stop()
    runner.join(20)
    assert not runner.is_alive()
    assert names == ["first.dat", "second.dat"]


def test_start_up_failures_are_one_sentence(sample_catalog, tmp_path):
    with pytest.raises(
        UnitStartError,
        match=r"^unit test.needs-file has invalid params: "
        r"params\.calibration: field required$",  # as `pipeline validate` says it
    ):
        UnitHarness("test.needs-file", {}, catalog=sample_catalog)
    missing = tmp_path / "cal.h5"
    with pytest.raises(UnitStartError, match=r"failed to start: calibration file .* is missing"):
        UnitHarness(
            "test.needs-file", {"calibration": str(missing)}, catalog=sample_catalog
        ).start()
    with pytest.raises(UnitStartError, match="cannot import the runtime no_such_module_anywhere"):
        UnitHarness("test.broken", catalog=sample_catalog).start()


def test_a_storage_error_at_start_up_is_not_a_configuration_error():
    """A unit that cannot start because of its storage (a file another program holds, a full
    disk) raises UnitStorageError: it stays one, not a UnitStartError (exit 78, never
    restarted), so the executor's restarts apply once the storage is put right."""
    import sys
    import types

    from asapo_pipelines.sdk import Processor, UnitStorageError

    class Held(Processor):
        def on_start(self):
            raise UnitStorageError("results.h5 is held open by another program; close it")

        def process(self, message):
            return None

    module = types.ModuleType("held_unit_module")
    module.Held = Held
    sys.modules["held_unit_module"] = module
    descriptor = describe(
        "test.held",
        kind="processor",
        summary="cannot open its file",
        runtime="held_unit_module:Held",
        inputs=[inp("values")],
    )
    with pytest.raises(UnitStorageError, match="held open by another program") as caught:
        UnitHarness(descriptor).start()
    assert not isinstance(caught.value, UnitStartError)


def test_emitting_to_an_unknown_port_is_an_error_record():
    from asapo_pipelines.sdk import Processor

    class Wrong(Processor):
        def process(self, message):
            self.emit("nope", message.value)

    import sys
    import types

    module = types.ModuleType("wrong_unit_module")
    module.Wrong = Wrong
    sys.modules["wrong_unit_module"] = module
    descriptor = describe(
        "test.wrong",
        kind="processor",
        summary="emits to a missing port",
        runtime="wrong_unit_module:Wrong",
        inputs=[inp("values")],
        outputs=[out("result")],
    )
    result = UnitHarness(descriptor).run([1])
    assert result.outputs == []
    assert "has no output port 'nope' (ports: result)" in result.errors[0]["error"]


def test_descriptor_built_with_describe_lists_ports_without_importing_runtime():
    d = describe(
        "acme.scale",
        kind="processor",
        summary="Scales.",
        runtime="acme_not_installed.runtime:Scale",
        inputs=[inp("values", "acme/numbers")],
        outputs=[out("scaled", "acme/numbers", format="seedee")],
    )
    assert [p.name for p in d.inputs] == ["values"]
    assert d.output("scaled").format == "seedee"


def test_array_ports_use_seedee(run_unit, sample_catalog):
    np = pytest.importorskip("numpy")
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    result = run_unit("test.double", [frame], catalog=sample_catalog)
    (out,) = result.outputs
    assert out.metadata["format"] == "seedee"
    doubled = out.value
    assert doubled.dtype == np.uint16
    assert doubled.shape == (3, 4)
    assert (doubled == frame * 2).all()
