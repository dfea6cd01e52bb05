"""The editor schemas: committed copies are current, they are valid draft-07, and they agree
with `pipeline validate` on valid and broken files."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.pipeline.loader import read_document
from asapo_pipelines.schema import pipeline_schema, schema_files, unit_schema

from helpers import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
HERE = Path(__file__).parent


def _repository_distributions() -> set[str]:
    names = {"asapo-pipelines"}
    for pyproject in ROOT.glob("plugins/*/pyproject.toml"):
        names.add(tomllib.loads(pyproject.read_text())["project"]["name"])
    return names


def _repository_catalog() -> tuple[Catalog, bool]:
    """The installed units that come from this repository, and whether all of its plugins are
    installed (only then can the whole-file schema be compared)."""
    catalog = Catalog.load()
    ours = _repository_distributions()
    units = {n: d for n, d in catalog.units.items() if d.distribution in ours}
    installed = {p.distribution for p in catalog.plugins if not p.errors}
    # the repository's transports and executors too (the Slurm plugin's `deploy: {slurm:}`):
    # they are branches of the whole-file schema
    backends = {
        kind: {n: d for n, d in getattr(catalog, kind).items() if d.distribution in ours}
        for kind in ("transports", "executors", "formats")
    }
    return Catalog(units, catalog.plugins, **backends), ours <= installed


def test_committed_unit_schemas_are_current() -> None:
    catalog, _ = _repository_catalog()
    wanted = schema_files(catalog)
    stale = [
        rel
        for rel in wanted
        if rel.startswith("units/")
        and (not (SCHEMAS / rel).is_file() or (SCHEMAS / rel).read_text() != wanted[rel])
    ]
    assert not stale, f"stale schemas, run `pipeline schema --output schemas`: {stale}"


def test_committed_pipeline_schema_is_current() -> None:
    catalog, complete = _repository_catalog()
    if not complete:
        pytest.skip("not every plugin of this repository is installed here")
    text = schema_files(catalog)["pipeline.schema.json"]
    assert (SCHEMAS / "pipeline.schema.json").read_text() == text, (
        "schemas/pipeline.schema.json is stale: run `pipeline schema --output schemas`"
    )


def test_schemas_are_valid_draft_07(catalog) -> None:
    from jsonschema import Draft7Validator

    schema = pipeline_schema(catalog)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    Draft7Validator.check_schema(schema)
    for descriptor in catalog.units.values():
        Draft7Validator.check_schema(unit_schema(descriptor))
    # one branch per unit, keyed by `unit: {const: NAME}`
    entry = schema["properties"]["units"]["additionalProperties"]
    keyed = [b["if"]["properties"]["unit"]["const"] for b in entry["allOf"]]
    assert keyed == list(catalog.units)
    assert entry["properties"]["unit"]["enum"] == list(catalog.units)
    assert {s["label"] for s in entry["defaultSnippets"]} == set(catalog.units)
    assert "$ref" not in json.dumps(schema)  # self-contained: publishable as one file


def test_snippets_carry_defaults_and_placeholders(catalog) -> None:
    entry = pipeline_schema(catalog)["properties"]["units"]["additionalProperties"]
    snippet = next(s for s in entry["defaultSnippets"] if s["label"] == "xas.normalize")
    body = snippet["body"]
    assert body["unit"] == "xas.normalize"
    assert body["params"]["method"] == "larch"
    assert body["params"]["rebin"] == 1
    assert body["inputs"] == {"scans": "${1:scans}"}
    writer = next(s for s in entry["defaultSnippets"] if s["label"] == "nexus.writer")["body"]
    assert writer["params"]["file"] == "${1:file}"  # required: a placeholder to fill


def _schema_errors(schema: dict, path: Path) -> list[str]:
    from jsonschema import Draft7Validator

    doc, _ = read_document(path)
    validator = Draft7Validator(schema)
    return [".".join(map(str, e.absolute_path)) for e in validator.iter_errors(doc.data)]


def test_schema_accepts_the_valid_file_and_rejects_broken_params(catalog) -> None:
    schema = pipeline_schema(catalog)
    assert _schema_errors(schema, HERE / "valid" / "p65.pipeline.yaml") == []
    errors = _schema_errors(schema, HERE / "broken" / "P202-param-types.pipeline.yaml")
    assert "units.normalize.params.rebin" in errors
    assert "units.normalize.params.method" in errors
    assert "units.writer.params.file" in errors
    errors = _schema_errors(schema, HERE / "broken" / "P204-unknown-param.pipeline.yaml")
    assert errors
    assert all(e.startswith("units.normalize.params") for e in errors)
    errors = _schema_errors(schema, HERE / "broken" / "P201-unknown-unit.pipeline.yaml")
    assert "units.normalize.unit" in errors


def test_cli_schema_check_and_output(
    tmp_path: Path, plugin_env: dict[str, str], core_env: dict[str, str]
) -> None:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    assert run_pipeline("schema", "--output", str(target), env=core_env).returncode == 0
    # the installed fake plugin adds units: the committed copy is stale for that environment
    stale = run_pipeline("schema", "--check", "--output", str(target), env=plugin_env)
    assert stale.returncode == 1
    assert "units/xas.normalize.schema.json" in stale.stderr
    assert "pipeline.schema.json" in stale.stderr
    written = run_pipeline("schema", "--output", str(target), env=plugin_env)
    assert written.returncode == 0, written.stderr
    assert (target / "units" / "xas.normalize.schema.json").is_file()
    fresh = run_pipeline("schema", "--check", "--output", str(target), env=plugin_env)
    assert fresh.returncode == 0, fresh.stderr
    # without the plugin its unit files are left over, and regenerating removes them
    leftover = run_pipeline("schema", "--check", "--output", str(target), env=core_env)
    assert leftover.returncode == 1
    assert "xas.normalize" in leftover.stderr
    assert run_pipeline("schema", "--output", str(target), env=core_env).returncode == 0
    assert not (target / "units" / "xas.normalize.schema.json").exists()


def test_cli_schema_prints_json_and_one_unit(plugin_env: dict[str, str]) -> None:
    whole = run_pipeline("schema", env=plugin_env)
    assert whole.returncode == 0
    assert (
        "xas.normalize"
        in json.loads(whole.stdout)["properties"]["units"]["additionalProperties"]["properties"][
            "unit"
        ]["enum"]
    )
    one = run_pipeline("schema", "--unit", "xas.normalize", env=plugin_env)
    data = json.loads(one.stdout)
    assert data["properties"]["unit"] == {
        "const": "xas.normalize",
        "description": "Normalizes XAS scans. (from fake-beamline)",
    }
    unknown = run_pipeline("schema", "--unit", "xas.normalise", env=plugin_env)
    assert unknown.returncode == 1
    assert (
        unknown.stderr.strip() == "error: unknown unit xas.normalise; did you mean xas.normalize?"
    )


def _sections(schema: dict, doc: dict, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths of every mapping a file may hold, as the schema names them: its properties
    (recursively) and, under `units:`, the file's instances with their unit's branch."""
    found = []
    props = dict(schema.get("properties", {}))
    for branch in schema.get("allOf", []):
        # a unit's branch; the others are a section's rules (`ExactlyOne`, ...)
        unit = branch.get("if", {}).get("properties", {}).get("unit", {}).get("const")
        if unit is not None and isinstance(doc, dict) and doc.get("unit") == unit:
            props.update(branch["then"]["properties"])
    for name, sub in props.items():
        types = sub.get("type")
        if "object" not in (types if isinstance(types, list) else [types]):
            continue
        found.append((*at, name))
        inner = doc.get(name) if isinstance(doc, dict) else None
        if at == () and name == "units":
            for instance, body in (inner or {}).items():
                entry = sub["additionalProperties"]
                found += _sections(entry, body, (*at, name, instance))
        else:
            found += _sections(sub, inner if isinstance(inner, dict) else {}, (*at, name))
    return found


def test_an_empty_section_is_accepted_by_the_editor_exactly_where_validate_accepts_it(
    catalog,
) -> None:
    # `retry:` with nothing after it is null in YAML: validate takes it as the defaults, so the
    # editor schema must not mark it as an error, and it must mark what validate refuses
    from jsonschema import Draft7Validator

    from asapo_pipelines.pipeline import validate_text

    schema = pipeline_schema(catalog)
    editor = Draft7Validator(schema)
    base, _ = read_document(HERE / "valid" / "p65.pipeline.yaml")
    paths = [p for p in _sections(schema, base.data) if p[0] != "units" or len(p) > 2]
    assert ("units", "advisor", "retry") in paths
    assert ("deploy", "local") in paths
    disagree = []
    for path in paths:
        data = json.loads(json.dumps(base.data))
        parent = data
        for key in path[:-1]:
            if not isinstance(parent.get(key), dict):
                parent[key] = {}
            parent = parent[key]
        parent[path[-1]] = None
        editor_ok = not list(editor.iter_errors(data))
        # what a null section itself can cause: the wrong type, a required parameter or input
        # missing, two transports named; not what depends on the rest of the file (a stream no
        # unit writes any more), which no schema of one key can see
        problems = validate_text(json.dumps(data), catalog).errors
        validate_ok = not [p for p in problems if p.code in ("P103", "P105", "P203", "P306")]
        if editor_ok != validate_ok:
            disagree.append(f"{'.'.join(path)}: editor {editor_ok}, validate {validate_ok}")
    assert not disagree, disagree
