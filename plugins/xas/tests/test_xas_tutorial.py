"""The tutorial's pipeline file uses the units' real names, ports and parameters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from asapo_pipelines.catalog import Catalog


def _tutorial() -> Path:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "docs" / "tutorial-p65-xas.md"
        if candidate.is_file():
            return candidate
    pytest.skip("docs/ is not part of this checkout")


def test_tutorial_pipeline_matches_the_units():
    text = _tutorial().read_text()
    block = re.search(r"```yaml\n(# yaml-language-server.*?)```", text, re.DOTALL)
    assert block, "the tutorial has no pipeline file"
    pipeline = YAML(typ="safe").load(block.group(1))
    catalog = Catalog.load()
    checked = 0
    for instance, config in pipeline["units"].items():
        if config["unit"] not in catalog:  # e.g. nexus.writer when only this plugin is installed
            continue
        unit = catalog.get(config["unit"])
        unit.params.model_validate(config.get("params", {}))
        assert set(config.get("inputs", {})) == {p.name for p in unit.inputs}, instance
        assert set(config.get("outputs", {})) == {p.name for p in unit.outputs}, instance
        checked += 1
    assert checked >= 4
