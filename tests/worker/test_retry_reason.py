"""A unit's retried attempts are said in its log as its final failure is: a retry line used to
hold the exception's text alone (`process failed (attempt 1 of 3): 'value'` for a `KeyError`),
naming neither the error nor the line, while the final one read `KeyError: 'value' (in
process, FILE:LINE)` (`errors.reason_of`). Real plugin distribution, real `pipeline run` and
`pipeline logs`."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import installed_plugin, plugin_env, run_pipeline

PLUGIN = """
from asapo_pipelines.sdk import describe, hookimpl, inp, out


@hookimpl
def register_units(register):
    register(describe(
        "retried.picky", kind="processor", summary="Fails on messages without a value.",
        runtime="asapo_retried_units.runtime:Picky",
        inputs=[inp("values")], outputs=[out("doubled")],
    ))
    register(describe(
        "retried.numbers", kind="connector", summary="Sends one message without a value.",
        runtime="asapo_retried_units.runtime:Numbers", outputs=[out("numbers")],
    ))
"""

RUNTIME = """
from asapo_pipelines.sdk import Processor, Source


class Numbers(Source):
    def run(self):
        self.emit("numbers", {"n": 1}, key="1")


class Picky(Processor):
    def process(self, message):
        return {"value": message.value["value"] * 2}  # a KeyError at every attempt
"""


def test_a_retried_attempt_is_named_with_its_type_and_line(tmp_path: Path) -> None:
    site = installed_plugin(
        tmp_path / "plugin",
        "asapo-retried-units",
        {"plugin.py": PLUGIN, "runtime.py": RUNTIME},
        {"retried": "asapo_retried_units.plugin"},
    )
    doc = {
        "pipeline": "retried",
        "units": {
            "numbers": {"unit": "retried.numbers", "outputs": {"numbers": "raw"}},
            "picky": {
                "unit": "retried.picky",
                "retry": {"attempts": 2},
                "inputs": {"values": "raw"},
                "outputs": {"doubled": "doubled"},
            },
        },
        "streams": {"doubled": {"description": "read by nothing in this test"}},
    }
    (tmp_path / "retried.pipeline.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    env = plugin_env(site)
    done = run_pipeline("run", "retried.pipeline.yaml", cwd=tmp_path, env=env, timeout=300)
    assert "went to the error stream" in done.stdout + done.stderr, done.stdout + done.stderr
    logs = run_pipeline("logs", "retried.pipeline.yaml", "picky", cwd=tmp_path, env=env)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    runtime = site / "asapo_retried_units" / "runtime.py"
    number = next(n for n, x in enumerate(RUNTIME.splitlines(), 1) if "KeyError" in x)
    reason = f"KeyError: 'value' (in process, {runtime}:{number})"
    said = logs.stdout.splitlines()
    for attempt in (1, 2):
        line = f"WARNING process failed (attempt {attempt} of 3): {reason}"
        assert [x for x in said if x.endswith(line)], logs.stdout
    assert [x for x in said if f"process failed, sent to the error stream: {reason}" in x], said
