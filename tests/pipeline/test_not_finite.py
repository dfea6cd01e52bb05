"""JSON has no infinity or NaN: a unit parameter YAML reads as one (`1e400`, `.nan`) or a
`--set` that gives one is refused, naming the parameter, before a run starts (it used to pass
validation and fail the run with a JSON error naming nothing)."""

from __future__ import annotations

import math

import pytest

from asapo_pipelines.errors import ConfigurationError
from asapo_pipelines.pipeline import validate_text
from asapo_pipelines.pipeline.loader import load_document
from asapo_pipelines.pipeline.validate import validate_document

from helpers import run_pipeline

FILE = """\
pipeline: not-finite
units:
  files:
    unit: core.files
    params: {{directory: data, settle_seconds: {value}}}
    outputs: {{files: raw}}
  sink:
    unit: core.jsonl-sink
    params: {{path: out.jsonl}}
    inputs: {{messages: raw}}
"""


@pytest.mark.parametrize("value", ["1e400", "-1e400", ".inf", ".nan"])
def test_validate_locates_a_non_finite_parameter(value: str, catalog) -> None:
    text = FILE.format(value=value)
    read = load_document(text, "f.yaml")[0].data["units"]["files"]["params"]["settle_seconds"]
    assert not math.isfinite(read)  # what YAML makes of it
    report = validate_text(text, catalog, "f.yaml")
    assert [(p.code, p.line) for p in report.errors] == [("P202", 5)]
    problem = report.errors[0]
    assert problem.column == text.splitlines()[4].index(value) + 1
    assert "units.files.params.settle_seconds" in problem.message
    assert "finite" in problem.message


def test_a_valid_pipeline_refuses_a_non_finite_param_set_later(catalog) -> None:
    """What a run does with a `--set` value before recording the run's configuration."""
    report = validate_text(FILE.format(value="0.5"), catalog, "f.yaml")
    assert report.ok
    doc = load_document(FILE.format(value="0.5"), "f.yaml")[0]
    pipeline = validate_document(doc, catalog)[1]
    assert pipeline is not None
    pipeline.units["files"].params["settle_seconds"] = float("nan")
    with pytest.raises(ConfigurationError, match="settle_seconds"):
        pipeline.params_for("files", catalog)


@pytest.mark.parametrize("value", ["1e400", "inf", "nan"])
def test_a_run_refuses_a_non_finite_set_value_naming_it(value: str, tmp_path) -> None:
    new = run_pipeline("new", "demo", cwd=tmp_path)
    assert new.returncode == 0, new.stderr
    result = run_pipeline(
        "run", "demo.pipeline.yaml", "--set", f"files.settle_seconds={value}", cwd=tmp_path
    )
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert "files.settle_seconds" in result.stderr
    assert "finite number" in result.stderr


def test_a_run_of_a_file_with_1e400_stops_at_validation(tmp_path) -> None:
    path = tmp_path / "f.pipeline.yaml"
    path.write_text(FILE.format(value="1e400"))
    result = run_pipeline("run", str(path), cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "JSON compliant" not in result.stderr
    assert "f.pipeline.yaml:5:" in result.stdout + result.stderr
    assert "settle_seconds" in result.stdout + result.stderr
