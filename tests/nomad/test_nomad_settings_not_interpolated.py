"""`deploy: {nomad: {namespace: "${NOMAD_NS}"}}` went to Nomad as the namespace "${NOMAD_NS}":
nothing interpolates a pipeline file (python-nomad and Nomad read NOMAD_NAMESPACE from the
environment themselves). `pipeline validate` now refuses `${` in the values Nomad's API gets as
written, one located sentence each, and the editor schema refuses them too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from asapo_pipelines.pipeline.loader import load_document
from asapo_pipelines.schema import pipeline_schema
from asapo_pipelines.testing import catalog_from_plugins

from helpers import run_pipeline

#: Nomad is asked nowhere here: a closed port makes any question to it fail loudly
NO_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}

UNITS = """\
pipeline: interp
units:
  files:
    unit: core.files
    params: {directory: /data/in}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: /data/out.jsonl}
    inputs: {messages: raw}
deploy:
  nomad:
"""


def _lines(text: str) -> list[str]:
    return text.splitlines()


@pytest.mark.parametrize(
    ("key", "value", "advice"),
    [
        ("namespace", "${NOMAD_NS}", "set NOMAD_NAMESPACE in the environment"),
        ("namespace", "$NOMAD_NS", "set NOMAD_NAMESPACE in the environment"),
        ("region", "eu-${SITE}", "set NOMAD_REGION in the environment"),
        ("datacenters", '["dc1", "${DC}"]', "write the value"),
    ],
)
def test_validate_refuses_an_interpolation_nomad_would_get_as_written(
    tmp_path: Path, key: str, value: str, advice: str
) -> None:
    written = value if value.startswith("[") else f'"{value}"'
    text = UNITS + f"    {key}: {written}\n"
    file = tmp_path / "interp.pipeline.yaml"
    file.write_text(text)
    line = _lines(text).index(f"    {key}: {written}") + 1

    done = run_pipeline("validate", str(file), env=NO_NOMAD)
    assert done.returncode == 1, done.stdout + done.stderr
    found = [p for p in _lines(done.stdout + done.stderr) if " P408 " in p]
    assert len(found) == 1, done.stdout + done.stderr
    assert found[0].startswith(f"{file}:{line}:"), found[0]
    assert "a pipeline file is not interpolated" in found[0]
    assert advice in found[0]
    assert re.search(r"\$\{?[A-Z]", found[0])  # the value as the user wrote it

    # the editor marks it alike, at the same key
    doc, _ = load_document(text)
    editor = Draft7Validator(pipeline_schema(catalog_from_plugins(distribution="t")))
    errors = list(editor.iter_errors(doc.data))
    assert [tuple(e.absolute_path)[:3] for e in errors] == [("deploy", "nomad", key)], errors


def test_plain_values_and_the_environment_variable_stay_valid(tmp_path: Path) -> None:
    file = tmp_path / "interp.pipeline.yaml"
    file.write_text(UNITS + '    namespace: "science"\n    datacenters: ["dc$1"]\n')
    done = run_pipeline("validate", str(file), env={**NO_NOMAD, "NOMAD_NAMESPACE": "science"})
    assert done.returncode == 0, done.stdout + done.stderr
