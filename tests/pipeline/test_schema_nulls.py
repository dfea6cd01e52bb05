"""An explicit null on an optional setting is "not set" for `pipeline validate` (as `key:` with
nothing after it is), and the editor schema takes it too, everywhere: the file's own settings,
every installed transport's, executor's and unit's. Null is written into the schema as an
extra type of the setting, so the editor still shows its description, values and default."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from agreement_cases import agreement_catalog
from jsonschema import Draft7Validator
from pydantic import BaseModel, ValidationError

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.pipeline.checks import validate_as_json
from asapo_pipelines.pipeline.model import DeployConfig, TransportSection, pipeline_model
from asapo_pipelines.schema import editor_schema, params_schema, pipeline_schema

from helpers import run_pipeline


def _inner(annotation: object) -> Iterator[object]:
    """`annotation` and every type argument inside it (`dict[str, X | None]` gives X too)."""
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _inner(arg)


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """`root` and every model its fields hold, at any depth."""
    found = [root]
    for model in found:
        for info in model.model_fields.values():
            for inner in _inner(info.annotation):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                    found.append(inner)
    return found


def _optional(model: type[BaseModel]) -> list[str]:
    """The keys of `model`'s fields that may be None."""
    return [
        info.alias or name
        for name, info in model.model_fields.items()
        if type(None) in typing.get_args(info.annotation)
        or isinstance(info.annotation, types.NoneType)
    ]


def _sections(catalog: Catalog) -> Iterator[tuple[str, type[BaseModel], dict]]:
    """(name, model, its editor schema) for the file's sections and each unit's params. Not
    `transport:` and `deploy:` themselves, where null names a backend with its defaults
    (tests/pipeline/test_schema.py covers that); their backends' own models are here."""
    for model in _models(pipeline_model(catalog)):
        if not issubclass(model, TransportSection | DeployConfig):
            yield model.__name__, model, editor_schema(model.model_json_schema(by_alias=True))
    for name, descriptor in catalog.units.items():
        for model in _models(descriptor.params):
            schema = (
                params_schema(descriptor)
                if model is descriptor.params
                else editor_schema(model.model_json_schema(by_alias=True))
            )
            yield f"{name}:{model.__name__}", model, schema


@pytest.mark.parametrize("which", ["agreement", "installed"])
def test_null_on_every_optional_setting_is_not_set_for_validate_and_the_editor(
    which: str,
) -> None:
    catalog = agreement_catalog() if which == "agreement" else Catalog.load()
    checked, disagree = [], []
    for section, model, schema in _sections(catalog):
        editor = Draft7Validator(schema)
        for key in _optional(model):
            try:
                validate_as_json(model, {key: None})
                refused = []
            except ValidationError as exc:
                refused = [e["msg"] for e in exc.errors() if e["loc"][:1] == (key,)]
            underlined = [
                e.message for e in editor.iter_errors({key: None}) if list(e.path)[:1] == [key]
            ]
            checked.append(f"{section}.{key}")
            if refused or underlined:
                disagree.append(f"{section}.{key}: validate {refused}, editor {underlined}")
    assert not disagree, disagree
    names = {c.rsplit(".", 1)[1] for c in checked}
    assert {"beamtime", "token_file", "image", "python", "cpu", "retention", "format"} <= names
    if which == "agreement":
        assert {"agree.typed:TypedParams.day", "agree.typed:TypedParams.level"} <= set(checked)


def test_null_keeps_the_settings_description_values_and_default_for_the_editor() -> None:
    schema = pipeline_schema(agreement_catalog())
    asapo = schema["properties"]["transport"]["properties"]["asapo"]["properties"]
    assert asapo["beamtime"]["type"] == ["string", "null"]
    assert asapo["beamtime"]["description"].startswith("Beamtime id")
    entry = schema["properties"]["units"]["additionalProperties"]
    typed = next(
        b for b in entry["allOf"] if b["if"]["properties"]["unit"]["const"] == "agree.typed"
    )
    params = typed["then"]["properties"]["params"]["properties"]
    # completion offers the enum's members, hover its description
    assert params["level"]["enum"] == ["fast", "careful", None]
    assert params["level"]["description"] == "How, if not the unit's choice."
    assert "anyOf" not in params["level"]
    # the default goes into the snippet, the bound still holds
    assert params["retries"] == {
        "type": ["integer", "null"],
        "minimum": 0,
        "description": "Retries; null: no limit.",
        "default": 3,
    }
    snippet = next(s for s in entry["defaultSnippets"] if s["label"] == "agree.typed")
    assert snippet["body"]["params"]["retries"] == 3


def test_an_optional_constant_stays_an_alternative_with_null() -> None:
    # `type: [string, null]` beside `const: x` would still refuse null: anyOf keeps both
    from typing import Literal

    class Model(BaseModel):
        tag: Literal["x"] | None = None

    prop = editor_schema(Model.model_json_schema())["properties"]["tag"]
    assert prop["anyOf"][1] == {"type": "null"}
    assert Draft7Validator(prop).is_valid(None)
    assert Draft7Validator(prop).is_valid("x")
    assert not Draft7Validator(prop).is_valid("y")


def test_a_file_with_null_settings_validates_and_matches_the_schema_pipeline_writes(
    tmp_path: Path, core_env: dict[str, str]
) -> None:
    """What a user runs: `pipeline validate` accepts the file, and the schema that
    `pipeline schema` writes for the editor accepts it too."""
    path = tmp_path / "nulls.pipeline.yaml"
    path.write_text(
        "pipeline: nulls\n"
        "transport:\n"
        '  asapo: {endpoint: "asapo:8400", beamline: p65, beamtime: null, token_env: T}\n'
        "units:\n"
        "  files:\n"
        "    unit: core.files\n"
        "    params: {directory: data}\n"
        "    outputs: {files: files}\n"
        "    resources: {cpu: null, memory: 256}\n"
        "  sink:\n"
        "    unit: core.jsonl-sink\n"
        "    params: {path: out.jsonl}\n"
        "    inputs: {messages: files}\n"
        "deploy:\n"
        "  nomad: {image: null, python: null}\n"
    )
    validated = run_pipeline("validate", str(path), env=core_env)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    written = run_pipeline("schema", env=core_env)
    assert written.returncode == 0, written.stderr
    from asapo_pipelines.pipeline.loader import read_document

    doc, _ = read_document(path)
    editor = Draft7Validator(json.loads(written.stdout))
    assert [e.message for e in editor.iter_errors(doc.data)] == []
