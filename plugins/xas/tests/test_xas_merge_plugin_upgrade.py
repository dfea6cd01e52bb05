"""A run resumed after `plugins/xas` was upgraded: the spectra the old `xas.normalize` made and
those the new one makes are not averaged together. The old ones are left out of the merge with
a reason naming both versions, the merge's summary counts them and its log warns once."""

from __future__ import annotations

import logging

import pytest
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.testing.harness import UnitHarness, message, run_unit
from asapo_pipelines_xas.merge import Merger
from asapo_pipelines_xas.normalize import normalize_scan
from asapo_pipelines_xas.params import NormalizeParams
from asapo_pipelines_xas.readers import read_scan


def normalized_by(version: str, name: str) -> list:
    """The spectrum of one P65 file as `xas.normalize` of plugin `version` makes it."""
    catalog = Catalog.load()
    unit = catalog.get("xas.normalize").model_copy(update={"version": version})
    scans = run_unit("xas.scan-files", params={"directory": str(DATA), "pattern": name})
    feed = [message(o.value, metadata=o.metadata) for o in scans.outputs]
    spectra = UnitHarness(unit, REFERENCE_SETTINGS).run(feed)
    assert spectra.errors == []
    return [message(o.value, metadata=o.metadata) for o in spectra.outputs]


def test_spectra_of_an_upgraded_normalize_are_not_averaged_with_the_old_ones(caplog):
    old, new = normalized_by("0.1.0", P65_SCANS[0]), normalized_by("0.2.0", P65_SCANS[1])
    with caplog.at_level(logging.WARNING):
        merged = run_unit("xas.merge", [*old, *new])
    assert merged.errors == []
    last = merged.values("merged")[-1]

    # the merge is that of the new version's spectrum alone, as xraylarch gives it
    alone = Merger().add(
        normalize_scan(read_scan(DATA / P65_SCANS[1]), NormalizeParams(**REFERENCE_SETTINGS))
    )
    assert last["n_merged"] == 1
    assert last["values"]["epsilon_k"] == pytest.approx(alone.values["epsilon_k"], rel=1e-9)
    assert last["settings"]["normalizer"]["version"] == "0.2.0"
    # the old one is listed with both versions, not taken for a faulty scan
    (rejected,) = last["rejected"]
    assert rejected["superseded"] is True
    assert rejected["normalised_by"] == "asapo-pipelines-xas 0.1.0"
    assert "asapo-pipelines-xas 0.1.0" in rejected["reasons"][0]
    assert "asapo-pipelines-xas 0.2.0" in rejected["reasons"][0]
    # the summary and the log say so, the log once
    (group,) = merged.summary["merges"].values()
    assert group["normalised_by_other_version"] == 1
    warnings = [r.getMessage() for r in caplog.records if "normalised by" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "asapo-pipelines-xas 0.1.0" in warnings[0]


def test_spectra_of_the_same_version_are_merged():
    spectra = normalized_by("0.2.0", P65_SCANS[0]) + normalized_by("0.2.0", P65_SCANS[1])
    merged = run_unit("xas.merge", spectra)
    last = merged.values("merged")[-1]
    assert last["n_merged"] == 2
    assert last["rejected"] == []
    assert "normalised_by_other_version" not in next(iter(merged.summary["merges"].values()))
