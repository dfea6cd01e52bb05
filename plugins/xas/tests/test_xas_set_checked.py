"""A `--set` that contradicts another unit is refused as the same value in the file is.

`calibrate: true` on normalize with scans read by a `xas.scan-files` whose `columns: {iref: null}`
switches the foil's channel off is refused by `pipeline validate` (P314, the XAS plugin's
`check_pipeline`). Made with `pipeline run --set normalize.calibrate=true` (or on `--resume`, or
`reprocess`), the same contradiction went through: the run started and every scan went to the
error stream, one by one, exit 65. It is now refused before anything starts, with the same
P314 sentence, located at the `--set` (the file has no calibrate), and validate's exit code.

Real P65 goethite scans (SOURCES.md), copied with `p65_variant`."""

from __future__ import annotations

import json

import pytest
from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import P65_SCANS, REFERENCE_SETTINGS, p65_variant

NORMALIZE = {**REFERENCE_SETTINGS, "mode": "transmission"}
SET = "normalize.calibrate=true"


@pytest.fixture
def no_iref(tmp_path):
    """A valid pipeline on one P65 scan whose source reads no reference channel."""
    data = tmp_path / "data"
    data.mkdir()
    p65_variant(P65_SCANS[0], data / "goe_Fe_K_240.00000.xdi", seed=0, noise=0)
    units = scan_chain("data", NORMALIZE, columns={"iref": None})
    pipeline = write_pipeline(tmp_path, "no-iref", units)
    assert pipeline_command(pipeline, "validate").returncode == 0
    return pipeline


def assert_refused_as_validate_refuses(pipeline, *args: str) -> None:
    refused = pipeline_command(pipeline, *args)
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 1, said
    assert "Traceback" not in said
    assert f"{pipeline.name} with --set {SET} is not valid (1 error)" in said, said
    # the file has no calibrate: the problem is at the --set, not at a line of the file
    assert f"{pipeline.name}:" not in said.partition("is not valid")[2], said
    assert f"--set {SET}: error P314 calibrate: true calibrates each scan" in said, said
    assert "its scans come from unit scans, which reads no reference channel" in said


def test_run_set_is_checked_across_units(no_iref):
    assert_refused_as_validate_refuses(no_iref, "run", "--set", SET)
    assert not (no_iref.parent / "store").exists()  # the run started nothing


def test_resume_and_reprocess_set_are_checked_across_units(no_iref):
    first = pipeline_command(no_iref, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    assert_refused_as_validate_refuses(no_iref, "run", "--resume", "--set", SET)
    assert_refused_as_validate_refuses(no_iref, "reprocess", "--from", "r1", "--set", SET)
    # neither began a run: r1 is still the only one
    runs = pipeline_command(no_iref, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    assert [run["id"] for run in json.loads(runs.stdout)["runs"]] == ["r1"], runs.stdout
