"""Every example pipeline compiles to a Nomad job that validates against the strict schema of
Nomad's job API in schemas/ (a contract with Nomad's documented API)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.launchplan.compile import compile_pipeline
from asapo_pipelines.pipeline.validate import load_pipeline, validate_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.pipeline.yaml"))
SCHEMA = json.loads((ROOT / "schemas" / "nomad-job.schema.json").read_text())


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_contract_nomad_api_example_compiles_to_a_valid_job(path):
    catalog = Catalog.load()
    report = validate_file(path, catalog)
    missing = [p for p in report.problems if p.code == "P201"]  # unknown unit
    if missing:
        pytest.skip(f"{path.name} needs units not installed here: {missing[0].message}")
    assert report.ok, [p.message for p in report.errors]
    job = compile_pipeline(load_pipeline(path, catalog), catalog).job
    jsonschema.Draft7Validator(SCHEMA).validate(job)
    pipeline = load_pipeline(path, catalog)
    groups = {g["Name"] for g in job["Job"]["TaskGroups"]}
    assert groups == set(pipeline.units)
