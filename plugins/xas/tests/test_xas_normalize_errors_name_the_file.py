"""Every error of xas.normalize names the scan file it was normalising, in the log line and in
the error record (`pipeline tail FILE errors`): xraylarch's own words ("autobk failed: x must be
strictly increasing if s = 0") do not say which of a directory's files failed.

Real files (SOURCES.md) and real xraylarch; the library's words are those xraylarch says at test
time for the same data and settings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from xas_procs import pipeline_command, scan_chain, write_pipeline
from xas_testdata import DATA, REFERENCE_SETTINGS

from asapo_pipelines_xas.normalize import compute_mu
from asapo_pipelines_xas.readers import Scan, read_scan

#: the Fe foil's data end at k = 15 Å⁻¹: a spline from kmin 15 fails in xraylarch's autobk,
#: while the Cu foil's (to 17.45 Å⁻¹) is normalised
KMIN = 15


def larch_autobk_error(path, mode: str, **autobk) -> str:
    """What xraylarch's autobk raises for the file's mu(E) (pre_edge first, as the unit does)."""
    from larch import Group
    from larch.xafs import autobk as larch_autobk
    from larch.xafs import pre_edge

    scan = read_scan(path)
    group = Group()
    mu = compute_mu(scan, mode)
    pre_edge(np.asarray(scan.energy), mu, group=group)
    with pytest.raises(Exception) as info:
        larch_autobk(np.asarray(scan.energy), mu, group=group, **autobk)
    return str(info.value)


def test_an_xraylarch_failure_names_the_file_in_the_log_and_the_error_record(tmp_path):
    words = larch_autobk_error(DATA / "fe_metal_rt.xdi", "mu", kmin=KMIN)
    (tmp_path / "data").mkdir()
    for name in ("cu_metal_rt.xdi", "fe_metal_rt.xdi"):
        shutil.copy(DATA / name, tmp_path / "data" / name)
    units = scan_chain("data", {"mode": "mu", "autobk": {"kmin": KMIN}})
    pipeline = write_pipeline(tmp_path, "foils", units)
    expected = f"fe_metal_rt.xdi: autobk failed: {words}"

    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "file cu_metal_rt.xdi, e0" in run.stdout  # the other file was normalised
    # the log line, as `pipeline logs` shows it (`pipeline run` prints it too, wrapped)
    log = pipeline_command(pipeline, "logs", "normalize")
    assert f"WARNING process refused it: {expected}\n" in log.stdout + log.stderr
    # the error record, as `pipeline tail FILE errors` shows it and as a program reads it
    errors = pipeline_command(pipeline, "tail", "errors", "--width", "400")
    assert errors.returncode == 0, errors.stdout + errors.stderr
    assert errors.stdout.rstrip().endswith(f"foils/normalize (r1): {expected}")
    (record,) = [
        json.loads(line)
        for line in pipeline_command(pipeline, "tail", "errors", "--json").stdout.splitlines()
    ]
    assert record["metadata"]["error"] == expected
    assert record["metadata"]["message"]["metadata"]["file"] == "fe_metal_rt.xdi"


def in_kev(scan: Scan) -> dict:
    """The `xas/scan` message of a producer that sends the file's energies in keV as they are."""
    body = scan.to_json()
    body["energy"] = [e / 1000.0 for e in body["energy"]]
    return body


def refused(run_unit, unit_message, body: dict, **params) -> str:
    result = run_unit("xas.normalize", [unit_message(body)], params=params)
    assert result.values("spectra") == []
    (record,) = result.errors
    assert record["exception"].endswith("SpectrumError")
    return record["error"]


def test_the_autobk_failure_of_a_kev_scan_names_its_file(run_unit, unit_message):
    scan = read_scan(DATA / "cu_metal_rt.xdi")
    error = refused(run_unit, unit_message, in_kev(scan), **REFERENCE_SETTINGS)
    assert error.startswith("cu_metal_rt.xdi: ")
    assert "failed" in error


def test_an_empty_noise_window_names_the_file(run_unit, unit_message):
    scan = read_scan(DATA / "cu_metal_rt.xdi")
    error = refused(
        run_unit,
        unit_message,
        scan.to_json(),
        mode="transmission",
        noise={"kmin": 30},
    )
    assert error.startswith("cu_metal_rt.xdi: the noise window is empty: kmax ")


def test_an_error_that_named_the_file_already_names_it_once(run_unit, unit_message):
    scan = read_scan(DATA / "fe_metal_rt.xdi")
    error = refused(run_unit, unit_message, scan.to_json(), mode="fluorescence")
    assert error.startswith("fe_metal_rt.xdi: mode fluorescence needs the ")
    assert error.count("fe_metal_rt.xdi") == 1
