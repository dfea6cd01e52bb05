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
        required = {p.name for p in unit.inputs if p.required}
        assert required <= set(config.get("inputs", {})) <= {p.name for p in unit.inputs}, instance
        assert set(config.get("outputs", {})) == {p.name for p in unit.outputs}, instance
        checked += 1
    assert checked >= 4


def test_tutorial_pipeline_does_what_the_tutorial_says():
    """Its units' params on the bundled data: one more scan after the first (uncertain, no floor
    fit yet); after two, the floor fit's number of scans still needed."""
    from asapo_pipelines_xas.agent import ConvergenceAgent
    from asapo_pipelines_xas.merge import Merger
    from asapo_pipelines_xas.normalize import normalize_scan
    from asapo_pipelines_xas.params import (
        ConvergenceParams,
        MergeParams,
        NormalizeParams,
        ScanFilesParams,
    )
    from asapo_pipelines_xas.scanfiles import list_scan_files, read_for_params

    doc = _tutorial()
    block = re.search(r"```yaml\n(# yaml-language-server.*?)```", doc.read_text(), re.DOTALL)
    units = YAML(typ="safe").load(block.group(1))["units"]
    files = ScanFilesParams.model_validate(units["scans"]["params"])
    # relative to the pipeline file, which lives in examples/
    directory = doc.parent.parent / "examples" / files.directory
    normalize = NormalizeParams.model_validate(units["normalize"]["params"])
    merger = Merger(MergeParams.model_validate(units["merge"].get("params", {})))
    agent = ConvergenceAgent(ConvergenceParams.model_validate(units["advisor"]["params"]))
    decisions = []
    for path in list_scan_files(directory, files.pattern):
        merged = merger.add(normalize_scan(read_for_params(path, files), normalize))
        decisions.append(agent.decide(merged))
    assert [d["action"] for d in decisions] == ["more_scans", "more_scans"]
    assert decisions[0]["arguments"]["scans"] == 1
    assert decisions[0]["metrics"]["uncertain"] is True
    second = decisions[1]["metrics"]
    assert second["noise_model"]["floor"] < units["advisor"]["params"]["target_noise"]
    assert decisions[1]["arguments"]["scans"] == second["predicted_scans_total"] - 2
    # the tutorial's text quotes these numbers
    text = doc.read_text()
    assert f"{second['noise_model']['floor']:.2e}" in text
    assert f"after {second['predicted_scans_total']} merged scans" in text
