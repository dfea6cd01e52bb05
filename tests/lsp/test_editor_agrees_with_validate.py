"""What the editor shows, through the real yaml-language-server, agrees with `pipeline validate`
on each file of tests/pipeline/agreement_cases.py: a file validate rejects is underlined, a
valid one is not, and a check across a section's fields says validate's own sentence."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from agreement_cases import CASES, Case, agreement_catalog, redis_available
from lsp_client import LspClient

SCHEMA = "agree.schema.json"
_counter = itertools.count()


@pytest.fixture(scope="module")
def agree_schema(workspace: Path) -> str:
    """The schema `pipeline schema` writes for the cases' catalog, beside the documents."""
    from asapo_pipelines.schema import dumps, pipeline_schema

    (workspace / SCHEMA).write_text(dumps(pipeline_schema(agreement_catalog())))
    return f"# yaml-language-server: $schema=./{SCHEMA}\n"


def _diagnostics(server: LspClient, workspace: Path, header: str, body: str) -> list[dict]:
    text = header + body
    path = workspace / f"agree{next(_counter)}.pipeline.yaml"
    path.write_text(text)
    return server.wait_diagnostics(server.open(path, text))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_editor_underlines_exactly_what_validate_rejects(
    case: Case, server: LspClient, workspace: Path, agree_schema: str
) -> None:
    if case.needs_redis and not redis_available():
        pytest.skip("the redis plugin is not installed")
    diagnostics = _diagnostics(server, workspace, agree_schema, case.text)
    if case.codes:
        assert diagnostics, f"validate reports {case.codes}; the editor shows nothing"
    else:
        assert diagnostics == []


@pytest.mark.parametrize(
    ("transport", "deploy", "sentence"),
    [
        (
            'asapo: {endpoint: "a:8400", token_env: T, beamtime: "1", beamline: p65}',
            "",
            "the asapo transport needs exactly one of beamtime or beamline",
        ),
        ("", "{driver: docker}", "the docker driver needs an image"),
        (
            "",
            "{python: {venv: /env, install: {}}}",
            "python must name exactly one of venv or install",
        ),
    ],
)
def test_a_check_across_fields_says_validates_sentence(
    transport: str,
    deploy: str,
    sentence: str,
    server: LspClient,
    workspace: Path,
    agree_schema: str,
) -> None:
    from agreement_cases import pipeline_text

    from asapo_pipelines.pipeline import validate_text

    text = pipeline_text(transport=transport, deploy=deploy)
    report = validate_text(text, agreement_catalog())
    assert sentence in [p.message for p in report.errors]
    messages = [d["message"] for d in _diagnostics(server, workspace, agree_schema, text)]
    assert sentence in messages, messages
