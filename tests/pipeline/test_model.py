"""The Python API other parts use: `load_pipeline` and the `Pipeline` model, and the loader's
positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from asapo_pipelines.pipeline import PipelineInvalid, load_pipeline, validate_text
from asapo_pipelines.pipeline.loader import LoadFailed, Pos, load_document, load_text

MINIMAL = """\
pipeline: mini
units:
  files:
    unit: core.files
    params: {directory: data}
    outputs: {files: files}
  sink:
    unit: core.jsonl-sink
    params: {path: out.jsonl}
    inputs: {messages: files}
"""


def _write(tmp_path: Path, text: str, name: str = "mini.pipeline.yaml") -> Path:
    path = tmp_path / "pipelines" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_and_paths_relative_to_the_file(tmp_path: Path, catalog) -> None:
    path = _write(tmp_path, MINIMAL)
    pipeline = load_pipeline(path, catalog)
    assert pipeline.transport.kind == "embedded"
    assert pipeline.transport.spec() == {
        "embedded": {"path": str(tmp_path / "pipelines" / ".pipeline-data")}
    }
    assert pipeline.deploy.nomad.driver == "raw_exec"
    assert pipeline.deploy.nomad.datacenters == ["*"]
    files = pipeline.units["files"]
    assert files.replicas == 1
    assert files.resources is None
    assert files.retry.attempts == 3
    assert files.retry.delay == 1.0
    assert pipeline.resources_for("files", catalog).cpu == 200  # core.files' default
    assert pipeline.producers() == {"files": [("files", "files")]}
    assert pipeline.consumers() == {"files": [("sink", "messages")]}
    assert pipeline.descriptor("sink", catalog).name == "core.jsonl-sink"


def test_asapo_transport_spec_never_holds_a_token(tmp_path: Path, catalog) -> None:
    text = MINIMAL.replace(
        "units:",
        "transport:\n  asapo:\n    endpoint: asapo-services:8400\n    beamline: p65\n"
        "    token_file: secrets/token\nunits:",
    )
    pipeline = load_pipeline(_write(tmp_path, text), catalog)
    assert pipeline.transport.kind == "asapo"
    assert pipeline.transport.spec() == {
        "asapo": {
            "endpoint": "asapo-services:8400",
            "beamline": "p65",
            "data_source_prefix": "",
            "token_file": str(tmp_path / "pipelines" / "secrets" / "token"),
            "request_timeout": 10.0,
            "max_in_flight": 1000,
            "source_type": "processed",
        }
    }


def test_empty_sections_count_as_empty(catalog) -> None:
    text = MINIMAL.replace("pipeline: mini\n", "pipeline: mini\ntransport:\nstreams:\ndeploy:\n")
    text += "  copy:\n    unit: core.identity\n    params:\n    inputs:\n    outputs:\n"
    report = validate_text(text, catalog)
    # only the unconnected ports of the identity unit are reported, nothing about the empties
    assert [p.code for p in report.problems] == ["P306", "P308"]


def test_invalid_file_raises_with_every_error(tmp_path: Path, catalog) -> None:
    text = MINIMAL.replace("core.files", "core.file").replace("out.jsonl", "[1]")
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline(_write(tmp_path, text), catalog)
    codes = [p.code for p in info.value.report.errors]
    assert codes == ["P201", "P202"]
    assert info.value.exit_code == 1
    missing = tmp_path / "nope.pipeline.yaml"
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline(missing, catalog)
    assert info.value.exit_code == 2


def test_wrong_shaped_section_names_no_python_class(catalog) -> None:
    report = validate_text(
        MINIMAL.replace("unit: core.jsonl-sink", "unit: core.jsonl-sink\n    retry: 3"), catalog
    )
    (problem,) = report.problems
    assert problem.message == "units.sink.retry: input should be a valid dictionary (got 3)"


def test_loader_positions_of_keys_and_values() -> None:
    doc = load_text("a:\n  b: [1, {c: x}]\n  d: &anchor\n    e: 1\n  f: *anchor\n")
    assert doc.keys[("a", "b")] == Pos(2, 3)
    assert doc.values[("a", "b")] == Pos(2, 6)
    assert doc.values[("a", "b", 1, "c")] == Pos(2, 14)
    assert doc.data["a"]["f"] == {"e": 1}
    # a path that does not exist points at the nearest key that does
    assert doc.locate(("a", "b", 1, "zz")) == Pos(2, 10)  # the `{`
    assert doc.locate(("a", "missing", "x")) == Pos(1, 1)


def test_merge_keys_explicit_keys_win() -> None:
    doc = load_text("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n")
    assert doc.data["thing"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("a: &x [*x]\n", "P005"),
        ("a: 1\na: 2\n", "P003"),
        ("? [a, b]\n: 1\n", "P004"),
        ("a: !!binary aGVsbG8=\n", "P007"),
        ("a: [\n", "P002"),
    ],
)
def test_loader_problems(text: str, code: str) -> None:
    try:
        _, problems = load_document(text, "t.yaml")
    except LoadFailed as exc:
        problems = exc.problems
    assert [p.code for p in problems] == [code]
    assert all(p.file == "t.yaml" and p.line >= 1 for p in problems)


def test_a_pipeline_name_too_long_is_reported_once_not_as_streams_too_long(catalog) -> None:
    # the streams' room in the namespace depends on the name: with a name past its own limit
    # there is no sensible stream limit to advise ("use at most -2 characters")
    report = validate_text(MINIMAL.replace("pipeline: mini", "pipeline: " + "p" * 120), catalog)
    assert [p.code for p in report.errors] == ["P104"]
    assert "at most 63 characters" in report.errors[0].message
