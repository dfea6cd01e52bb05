"""`pipeline tail FILE errors` is where `pipeline run` sends a unit's author when messages went
to the error stream. A record's reason used to be the exception's text alone: a `KeyError`
in a unit's `process` read `'value'`, naming neither the error nor the line. Now an exception
of the unit's own is shown as `Type: text (in HOOK, FILE:LINE)`, and a `PipelinesError` (the
unit's own sentence, or a refusal of the SDK naming the unit and port) as it is; the unit's log (so
`pipeline run` and `pipeline logs`) says the same of each message that failed for good. Real
plugin distribution, real `pipeline run`, `pipeline tail` and `pipeline logs`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import installed_plugin, run_pipeline

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp, out


@hookimpl
def register_units(register):
    register(describe(
        "tailerr.picky", kind="processor", summary="Fails on messages without a value.",
        runtime="asapo_tailerr_units.runtime:Picky",
        inputs=[inp("values")], outputs=[out("doubled")],
    ))
    register(describe(
        "tailerr.numbers", kind="connector", summary="Sends two messages without a value.",
        runtime="asapo_tailerr_units.runtime:Numbers", outputs=[out("numbers")],
    ))
"""

RUNTIME = """
from asapo_pipelines.sdk import PipelinesError, Processor, Source


class Unwanted(PipelinesError):
    pass  # a failure the unit says in a sentence of its own


class Numbers(Source):
    def run(self):
        for n in range(3):
            self.emit("numbers", {"n": n}, key=str(n))


class Picky(Processor):
    def process(self, message):
        if message.id == 1:
            self.emit("nowhere", {})  # the SDK refuses it: no such port
        if message.id == 3:
            raise Unwanted("message 3 is not wanted: it is the third")
        return {"value": message.value["value"] * 2}  # a KeyError for the others
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    installed_plugin(
        root,
        "asapo-tailerr-units",
        {"plugin.py": PLUGIN, "runtime.py": RUNTIME},
        {"tailerr": "asapo_tailerr_units.plugin"},
    )
    home = root / "home"
    home.mkdir()
    doc = {
        "pipeline": "tailerr",
        "units": {
            "numbers": {"unit": "tailerr.numbers", "outputs": {"numbers": "raw"}},
            "picky": {
                "unit": "tailerr.picky",
                "retry": {"attempts": 0},
                "inputs": {"values": "raw"},
                "outputs": {"doubled": "doubled"},
            },
        },
        "streams": {"doubled": {"description": "read by nothing in this test"}},
    }
    (home / "tailerr.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    env = {"PYTHONPATH": str(root / "site")}
    done = run_pipeline("run", "tailerr.pipeline.yaml", cwd=home, env=env, timeout=300)
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert "went to the error stream" in said, said
    return home


def _errors(home: Path) -> list[str]:
    done = run_pipeline("tail", "tailerr.pipeline.yaml", "errors", cwd=home)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _reason(home: Path) -> str:
    """How the KeyError of RUNTIME is to be named: type, text, hook, file and line."""
    runtime = home.parent / "site" / "asapo_tailerr_units" / "runtime.py"
    number = next(n for n, x in enumerate(RUNTIME.splitlines(), 1) if "KeyError" in x)
    return f"KeyError: 'value' (in process, {runtime}:{number})"


def test_an_exception_of_the_unit_is_named_with_its_type_and_line(ran: Path) -> None:
    (line,) = [x for x in _errors(ran) if "picky#2" in x]
    assert line.endswith(f"tailerr/picky (r1): {_reason(ran)}"), line


def test_the_unit_s_log_says_each_message_it_failed_on(ran: Path) -> None:
    """Only a refusal of the SDK was logged; an exception of the unit's own, with no retry
    left, was in the error stream alone: `pipeline logs` showed nothing of it."""
    done = run_pipeline("logs", "tailerr.pipeline.yaml", "picky", cwd=ran)
    assert done.returncode == 0, done.stdout + done.stderr
    said = f"WARNING process failed, sent to the error stream: {_reason(ran)}"
    assert [x for x in done.stdout.splitlines() if said in x], done.stdout


def test_a_pipelines_error_of_the_unit_is_its_own_sentence(ran: Path) -> None:
    (line,) = [x for x in _errors(ran) if "picky#3" in x]
    assert line.endswith("tailerr/picky (r1): message 3 is not wanted: it is the third"), line


def test_a_refusal_of_the_sdk_is_its_own_sentence(ran: Path) -> None:
    (line,) = [x for x in _errors(ran) if "picky#1" in x]
    sentence = "unit tailerr.picky has no output port 'nowhere' (ports: doubled)"
    assert line.endswith(f"tailerr/picky (r1): {sentence}"), line
