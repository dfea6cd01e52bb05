"""Streams that form a cycle (P313): a unit whose input depends on its own output.

A loop nothing outside feeds can never carry a message, and in a batch run (each unit ends after
its inputs end) no loop ever ends, so `pipeline run` waited forever. A loop fed from outside in a
pipeline that runs until stopped is the agent and queue bridge feedback of docs/bluesky.md, and
stays valid.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asapo_pipelines.pipeline import validate_text
from asapo_pipelines.sdk import Port, UnitDescriptor, hookimpl
from asapo_pipelines.testing import catalog_from_plugins

from helpers import run_pipeline

SELF_LOOP = """\
pipeline: selfloop
units:
  files: {unit: core.files, params: {directory: files/, pattern: "*.txt"}, outputs: {files: raw}}
  loop:  {unit: core.identity, inputs: {input: s}, outputs: {output: s}}
  sink:  {unit: core.jsonl-sink, params: {path: r.jsonl}, inputs: {messages: raw}}
"""
SELF_LOOP_PROBLEM = (
    "selfloop.pipeline.yaml:4:48: error P313 streams form a cycle: loop reads s, which loop "
    "writes; nothing outside the cycle feeds it, so no message can ever reach its units"
)


class _FeedbackUnits:
    """An agent with an optional feedback input, and a bridge that reports on what it got:
    the shape of xas.convergence-agent and bluesky.queue."""

    @hookimpl
    def register_units(self, register) -> None:  # type: ignore[no-untyped-def]
        register(
            UnitDescriptor(
                name="loop.agent",
                kind="agent",
                summary="Suggests plans from data and from what became of earlier ones.",
                inputs=(
                    Port(name="data", content_type="*/*"),
                    Port(name="feedback", content_type="*/*", required=False),
                ),
                outputs=(Port(name="plans", content_type="*/*"),),
                runtime="loop_units:Agent",
            )
        )
        register(
            UnitDescriptor(
                name="loop.bridge",
                kind="processor",
                summary="Queues plans and says what became of them.",
                inputs=(Port(name="plans", content_type="*/*"),),
                outputs=(Port(name="status", content_type="*/*"),),
                runtime="loop_units:Bridge",
            )
        )


@pytest.fixture(scope="module")
def feedback_catalog():
    return catalog_from_plugins(_FeedbackUnits())


def _problems(text: str, catalog, file: str = "selfloop.pipeline.yaml") -> list[str]:
    return [p.text() for p in validate_text(textwrap.dedent(text), catalog, file).sorted()]


def test_a_unit_wired_to_itself_is_refused_at_its_input(feedback_catalog) -> None:
    assert _problems(SELF_LOOP, feedback_catalog) == [SELF_LOOP_PROBLEM]


def test_two_units_feeding_each_other_are_named_in_the_order_the_data_goes_back(
    feedback_catalog,
) -> None:
    text = """\
        pipeline: twoloop
        units:
          files: {unit: core.files, params: {directory: files/}, outputs: {files: raw}}
          sink: {unit: core.jsonl-sink, params: {path: r.jsonl}, inputs: {messages: raw}}
          a: {unit: core.identity, inputs: {input: s1}, outputs: {output: s2}}
          b: {unit: core.identity, inputs: {input: s2}, outputs: {output: s1}}
    """
    assert _problems(text, feedback_catalog, "two.pipeline.yaml") == [
        "two.pipeline.yaml:5:44: error P313 streams form a cycle: a reads s1, which b writes; "
        "b reads s2, which a writes; nothing outside the cycle feeds it, so no message can ever "
        "reach its units"
    ]


def test_an_external_stream_does_not_make_a_closed_loop_valid(feedback_catalog) -> None:
    """An external stream makes the pipeline a service, but feeds nothing inside the loop."""
    text = """\
        pipeline: extloop
        streams:
          incoming: {external: true}
        units:
          sink: {unit: core.jsonl-sink, params: {path: r.jsonl}, inputs: {messages: incoming}}
          loop: {unit: core.identity, inputs: {input: s}, outputs: {output: s}}
    """
    assert _problems(text, feedback_catalog, "ext.pipeline.yaml") == [
        "ext.pipeline.yaml:6:47: error P313 streams form a cycle: loop reads s, which loop "
        "writes; nothing outside the cycle feeds it, so no message can ever reach its units"
    ]


FEEDBACK = """\
pipeline: feedback
units:
  files: {unit: core.files, params: {directory: files/WATCH}, outputs: {files: raw}}
  agent: {unit: loop.agent, inputs: {data: raw, feedback: status}, outputs: {plans: plans}}
  bridge: {unit: loop.bridge, inputs: {plans: plans}, outputs: {status: status}}
"""


def test_a_fed_loop_is_refused_in_a_batch_run_and_allowed_when_it_runs_until_stopped(
    feedback_catalog,
) -> None:
    batch = FEEDBACK.replace("WATCH}", "}")
    assert _problems(batch, feedback_catalog, "feedback.pipeline.yaml") == [
        "feedback.pipeline.yaml:4:59: error P313 streams form a cycle: agent reads status, "
        "which bridge writes; bridge reads plans, which agent writes; a batch run would never "
        "end, since each unit waits for its inputs to end (a loop suits only a pipeline that "
        "runs until stopped, e.g. a source with watch: true)"
    ]
    watching = FEEDBACK.replace("WATCH}", ", watch: true}")
    assert _problems(watching, feedback_catalog) == []
    external = FEEDBACK.replace(
        "pipeline: feedback\n", "pipeline: f\nstreams: {raw: {external: true}}\n"
    )
    external = "\n".join(line for line in external.splitlines() if "core.files" not in line)
    assert _problems(external + "\n", feedback_catalog) == []


# -- the real commands ---------------------------------------------------------------------------
@pytest.fixture
def self_loop(tmp_path: Path) -> Path:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("x\n")
    path = tmp_path / "selfloop.pipeline.yaml"
    path.write_text(SELF_LOOP)
    return path


def test_cli_validate_prints_the_cycle(self_loop: Path, core_env: dict[str, str]) -> None:
    result = run_pipeline("validate", self_loop.name, env=core_env, cwd=self_loop.parent)
    assert result.returncode == 1, result.stderr
    assert result.stdout == SELF_LOOP_PROBLEM + "\n"
    assert result.stderr == "selfloop.pipeline.yaml: invalid (1 error)\n"


def test_cli_run_refuses_the_cycle_instead_of_waiting_forever(
    self_loop: Path, core_env: dict[str, str]
) -> None:
    result = run_pipeline("run", self_loop.name, env=core_env, cwd=self_loop.parent, timeout=60)
    assert result.returncode == 1
    assert result.stderr == (
        "error: selfloop.pipeline.yaml is not a valid pipeline file (1 error):\n"
        + SELF_LOOP_PROBLEM
        + "\n"
    )
    assert not (self_loop.parent / ".pipeline-data").exists()
