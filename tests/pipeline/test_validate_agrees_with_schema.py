"""`pipeline validate` and the editor schema agree on each file of agreement_cases.py: the
editor rejects exactly the files validate rejects, at the part validate names; unit parameters
are held to the types the file gives them, as the editor holds them; and every problem of one
section is reported at once, each at its own line."""

from __future__ import annotations

import json

import pytest
from agreement_cases import CASES, Case, agreement_catalog, redis_available
from jsonschema import Draft7Validator

from asapo_pipelines.pipeline import validate_text
from asapo_pipelines.pipeline.loader import load_document
from asapo_pipelines.schema import pipeline_schema

from helpers import run_pipeline


@pytest.fixture(scope="module")
def catalog():
    return agreement_catalog()


@pytest.fixture(scope="module")
def editor(catalog) -> Draft7Validator:
    return Draft7Validator(pipeline_schema(catalog))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_and_the_editor_schema_agree(case: Case, catalog, editor) -> None:
    if case.needs_redis and not redis_available():
        pytest.skip("the redis plugin is not installed")
    report = validate_text(case.text, catalog, "agree.pipeline.yaml")
    assert tuple(sorted(p.code for p in report.errors)) == case.codes, report.text()
    # the document as the editor reads it: YAML 1.2, so `on` and `yes` are text
    doc, _ = load_document(case.text)
    errors = list(editor.iter_errors(doc.data))
    if not case.codes:
        assert errors == [], [e.message for e in errors]
        return
    paths = [tuple(e.absolute_path) for e in errors]
    assert any(path[: len(case.where)] == case.where for path in paths), (paths, case.where)


def test_the_redis_url_pattern_is_what_the_config_accepts() -> None:
    """The pattern written into the schema and the config model's own checks: one verdict."""
    if not redis_available():
        pytest.skip("the redis plugin is not installed")
    import re

    from asapo_pipelines_redis.config import RedisConfig
    from pydantic import ValidationError

    pattern = re.compile(RedisConfig.model_json_schema()["properties"]["url"]["pattern"])
    urls = [
        "redis://127.0.0.1:6379/0",
        "rediss://cache.example",
        "redis://reader@h:1/2?protocol=3",
        "redis://[::1]:6379/0",
        "unix:///run/redis.sock?db=0",
        "redis://h:0",
        "redis://h:65535",
        "redis://:pw@h",
        "redis://u:pw@h:99999",
        "pw:secret@host",
        "http://h",
        "redis://h:65536",
        "redis://h:-1",
        "redis://h:/0",
        "redis://",
        "redis:///0",
        "REDIS://h",
        "redis://h x",
        "redis://a@b@h",
        "redis://[zz]",
        "redis://[::1",
    ]
    disagree = []
    for url in urls:
        try:
            RedisConfig(url=url)
            accepted = True
        except ValidationError:
            accepted = False
        if accepted != bool(pattern.search(url)):
            disagree.append(url)
    assert not disagree


def _located(text: str, catalog) -> list[tuple[str, int]]:
    report = validate_text(text, catalog, "agree.pipeline.yaml")
    return sorted((p.code, p.line) for p in report.errors)


def test_every_problem_of_a_transport_section_is_reported_at_once(catalog) -> None:
    asapo = (
        "pipeline: agree\n"
        "transport:\n"
        "  asapo:\n"
        '    beamtime: "1"\n'
        "    beamline: p65\n"
        "    token: abc\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}}\n"
    )
    # no endpoint (P101), both beamtime and beamline (P107, at the second), neither token file
    # nor variable (P107, at the section), and a token in the file (P106)
    assert _located(asapo, catalog) == [
        ("P101", 3),
        ("P106", 6),
        ("P107", 3),
        ("P107", 5),
    ]
    if not redis_available():
        return
    redis = (
        "pipeline: agree\n"
        "transport:\n"
        "  redis:\n"
        "    inline_max: -5\n"
        "    password_file: pw.txt\n"
        "    password_env: PW\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}}\n"
    )
    assert _located(redis, catalog) == [("P103", 4), ("P103", 6)]


def test_every_problem_of_a_deploy_section_is_reported_at_once(catalog) -> None:
    nomad = (
        "pipeline: agree\n"
        "units:\n"
        "  files: {unit: core.files, params: {directory: data}}\n"
        "deploy:\n"
        "  nomad:\n"
        "    driver: docker\n"
        "    python:\n"
        "      venv: relative/path\n"
    )
    assert _located(nomad, catalog) == [("P402", 6), ("P406", 8)]
    both = nomad.replace(
        "      venv: relative/path\n",
        "      venv: /env\n      install: {packages: [numpy]}\n",
    ).replace("    driver: docker\n", "")
    # both environments (P404) and, inside the second, a requirement not pinned (P407)
    assert _located(both, catalog) == [("P404", 8), ("P407", 8)]


def test_the_command_reports_the_sections_problems_together(tmp_path) -> None:
    """What a user runs: `pipeline validate` on the file QA wrote, every problem in one run."""
    path = tmp_path / "qa.pipeline.yaml"
    path.write_text(
        "pipeline: qa\n"
        "transport:\n"
        '  asapo: {beamtime: "1", beamline: p65, token: abc}\n'
        "units:\n"
        "  files:\n"
        "    unit: core.files\n"
        '    params: {directory: data, watch: "true", settle_seconds: "0.5"}\n'
        "deploy:\n"
        "  nomad: {driver: docker, python: {venv: relative/path}}\n"
    )
    result = run_pipeline("validate", "--format", "json", str(path))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    problems = json.loads(result.stdout)["files"][0]["problems"]
    codes = sorted(p["code"] for p in problems if p["severity"] == "error")
    assert codes == ["P101", "P106", "P107", "P107", "P202", "P202", "P402", "P406"]


def test_a_run_holds_set_values_to_the_files_types(tmp_path) -> None:
    """A `--set` value goes through the same check as the file: `yes` is text in YAML 1.2, not
    a boolean, so the run is refused in one sentence instead of reading subdirectories."""
    new = run_pipeline("new", "demo", cwd=tmp_path)
    assert new.returncode == 0, new.stderr
    result = run_pipeline(
        "run", "demo.pipeline.yaml", "--set", "files.recursive=yes", cwd=tmp_path, timeout=120
    )
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert "recursive" in result.stderr
    assert "boolean" in result.stderr
    runs = run_pipeline("runs", "demo.pipeline.yaml", cwd=tmp_path)
    assert "no runs" in runs.stdout + runs.stderr
