"""A `noise.kmax` past the end of the data is warned of. A beamline scientist who set it to
Larch's default, 20 Å⁻¹, on the P65 repeats (chi(k) ends at 16.05 Å⁻¹) got a merged noise
biased low by some 10 %, and the agent stopped ("reached the target") where the same data with
a window inside them ask for more scans; nothing in the run said the window left the data,
which the tutorial says it must not. The example P65 pipeline on the real files, through the
CLI; the end of the data is read from the spectra the run sent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from xas_procs import pipeline_command, read
from xas_testdata import DATA, P65_SCANS

pytest.importorskip("larch")
pytest.importorskip("asapo_pipelines_nexus")  # the example writes its results with it

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def _example(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, data / name)
    return Path(shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name))


def _normalize_log(pipeline: Path) -> str:
    logs = pipeline_command(pipeline, "logs", "normalize")
    assert logs.returncode == 0, logs.stderr
    return logs.stdout + logs.stderr


def test_a_noise_window_past_the_end_of_the_data_is_warned_of(tmp_path: Path) -> None:
    pipeline = _example(tmp_path)
    kmax = 20.0
    run = pipeline_command(pipeline, "run", "--set", f"normalize.noise.kmax={kmax:g}")
    assert run.returncode == 0, run.stdout + run.stderr

    spectra = [value for _, value in read(tmp_path / ".pipeline-data", "spectra")]
    ends = {s["metadata"]["file"]: max(s["arrays"]["k"]) for s in spectra}
    assert len(ends) == len(P65_SCANS)
    assert all(end < kmax for end in ends.values())  # the window leaves the data
    said = [line for line in _normalize_log(pipeline).splitlines() if "noise.kmax" in line]
    assert len(said) == 1, said  # once, not once per scan
    first = next(file for file in ends if file in said[0])
    assert f"noise.kmax {kmax:g} runs the noise window past the end of the data" in said[0]
    assert f"ends at k = {ends[first]:.2f} Å⁻¹" in said[0]
    assert "WARNING" in said[0]


def test_a_noise_window_inside_the_data_is_not_warned_of(tmp_path: Path) -> None:
    pipeline = _example(tmp_path)
    run = pipeline_command(pipeline, "run", "--set", "normalize.noise.kmax=12")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "noise.kmax" not in _normalize_log(pipeline)
