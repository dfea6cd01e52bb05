"""Input that cannot give a result is refused with a sentence saying why: empty ranges in the
xraylarch settings (at `pipeline validate` and for `--set`), a P65 column line that names one
column too few, and an energy that is not a finite number."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pydantic
import pytest
from xas_procs import PIPELINE, write_pipeline
from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines_xas.errors import ScanFileError
from asapo_pipelines_xas.params import MergeParams, NormalizeParams
from asapo_pipelines_xas.readers import parse_scan, read_scan


def pipeline_cmd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASAPO_PIPELINES_")}
    env["ASAPO_PIPELINES_CACHE_DIR"] = str(cwd / "cache")
    env["COLUMNS"] = "200"
    return subprocess.run(
        [PIPELINE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def chain(normalize: dict) -> dict:
    return {
        "scans": {
            "unit": "xas.scan-files",
            "params": {"directory": "data", "pattern": "*.xdi"},
            "outputs": {"scans": "raw-scans"},
        },
        "normalize": {
            "unit": "xas.normalize",
            "params": normalize,
            "inputs": {"scans": "raw-scans"},
            "outputs": {"spectra": "spectra"},
        },
    }


EMPTY_WINDOW = "rmin 30 must be below rmax 25: the high-R region [30, 25] Å is empty"


def test_validate_refuses_an_empty_noise_window(tmp_path):
    normalize = {**REFERENCE_SETTINGS, "noise": {"rmin": 30, "rmax": 25, "kweight": 2}}
    pipeline = write_pipeline(tmp_path, "empty-window", chain(normalize))
    result = pipeline_cmd(tmp_path, "validate", str(pipeline))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "P202 units.normalize.params.noise" in out
    assert EMPTY_WINDOW in out
    assert "Traceback" not in out


def test_run_refuses_an_empty_noise_window_set_on_the_command_line(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / P65_SCANS[0], tmp_path / "data")
    pipeline = write_pipeline(tmp_path, "empty-window-set", chain(REFERENCE_SETTINGS))
    result = pipeline_cmd(tmp_path, "run", str(pipeline), "--set", "normalize.noise.rmin=30")
    assert result.returncode != 0
    assert EMPTY_WINDOW in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("settings", "sentence"),
    [
        (
            {"pre_edge": {"pre1": -30, "pre2": -150}},
            "pre1 -30 must be below pre2 -150: the pre-edge fit range [-30, -150] eV is empty",
        ),
        (
            {"pre_edge": {"norm1": 300, "norm2": 300}},
            "norm1 300 must be below norm2 300: the post-edge fit range [300, 300] eV is empty",
        ),
        ({"autobk": {"kmin": 12, "kmax": 3}}, "kmin 12 must be below kmax 3: the spline's k"),
        ({"noise": {"kmin": 14, "kmax": 10}}, "kmin 14 must be below kmax 10: the k window"),
        ({"noise": {"rmin": 25, "rmax": 25}}, "the high-R region [25, 25] Å is empty"),
    ],
)
def test_empty_ranges_are_refused(settings, sentence):
    with pytest.raises(pydantic.ValidationError, match=r".*") as info:
        NormalizeParams.model_validate(settings)
    assert sentence in str(info.value)


def test_empty_alignment_range_is_refused():
    with pytest.raises(pydantic.ValidationError) as info:
        MergeParams(align_emin=35, align_emax=-15)
    assert "align_emin 35 must be below align_emax -15" in str(info.value)


def test_a_temperature_step_without_temperature_in_group_by_is_refused(tmp_path):
    """`temperature_step: 10` for a series in steps of 10 K, `temperature` forgotten in
    `group_by`: every temperature's scans were merged as repeats of one measurement, without a
    word. `pipeline validate` says so, at the merge's params."""
    units = chain(REFERENCE_SETTINGS)
    units["merge"] = {
        "unit": "xas.merge",
        "params": {"temperature_step": 10},
        "inputs": {"spectra": "spectra"},
        "outputs": {"merged": "merged"},
    }
    pipeline = write_pipeline(tmp_path, "step-without-temperature", units)
    result = pipeline_cmd(tmp_path, "validate", str(pipeline))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "P202 units.merge.params" in out
    assert (
        "temperature_step 10 is set, but group_by (sample, element, edge, mode) has no "
        "temperature, so scans are not grouped by temperature at all: add temperature to "
        "group_by, or remove temperature_step"
    ) in " ".join(out.split())
    assert "Traceback" not in out
    # with temperature in group_by, the step is taken
    MergeParams(group_by=["sample", "temperature"], temperature_step=10)


def test_a_negative_calibration_energy_and_a_repeated_group_key_are_refused():
    """An outside tester's `calibration_energy: -5` and `group_by: [sample, sample,
    temperature]` passed `pipeline validate`."""
    with pytest.raises(pydantic.ValidationError) as info:
        NormalizeParams(calibration_energy=-5)
    assert "calibration_energy" in str(info.value)
    assert "greater than 0" in str(info.value)
    with pytest.raises(pydantic.ValidationError) as info:
        MergeParams(group_by=["sample", "sample", "temperature"])
    assert "group_by names sample twice: each key groups once; remove the repeat" in str(info.value)


def test_ranges_left_unset_or_in_order_pass():
    NormalizeParams.model_validate(
        {
            "pre_edge": {"pre1": -150, "pre2": -30, "norm1": 150},
            "autobk": {"kmin": 0},
            "noise": {"rmin": 15, "rmax": 25, "kmin": 2},
        }
    )


def _p65_lines() -> tuple[list[str], int]:
    """The lines of a P65 scan and the index of its column line (the last header line)."""
    lines = (DATA / P65_SCANS[1]).read_text().splitlines()
    column_line = max(i for i, line in enumerate(lines) if line.startswith("#"))
    return lines, column_line


def test_column_line_naming_one_column_too_few_is_named():
    lines, at = _p65_lines()
    names = lines[at].lstrip("#").split()
    values = len(lines[at + 1].split())
    assert len(names) == values  # the file as measured
    lines[at] = "#" + " ".join(names[:-1])  # the last name (T2) lost
    with pytest.raises(ScanFileError) as info:
        parse_scan("\n".join(lines), name="short.xdi")
    assert str(info.value) == (
        f"cannot read scan file short.xdi: the header's column line names {values - 1} columns "
        f"but the rows hold {values} values (line {at + 2})"
    )


def test_header_without_column_line_still_reads_by_index():
    lines, at = _p65_lines()
    lines[at] = "# measured at P65"
    scan = parse_scan("\n".join(lines), name="plain.xdi", columns={"energy": 0, "i0": 10})
    assert len(scan) == len(read_scan(DATA / P65_SCANS[1]))


@pytest.mark.parametrize("energy", ["inf", "-inf", "nan"])
def test_non_finite_energy_is_refused_with_its_line(energy):
    lines, at = _p65_lines()
    row = at + 5
    parts = lines[row].split()
    parts[0] = energy
    lines[row] = " ".join(parts)
    with pytest.raises(ScanFileError) as info:
        parse_scan("\n".join(lines), name="bad.xdi")
    assert str(info.value) == (
        f"cannot read scan file bad.xdi: line {row + 1}: energy {float(energy)} is not a "
        "finite number"
    )


def test_every_point_read_is_kept_or_counted():
    scan = read_scan(DATA / P65_SCANS[1])
    meta = scan.metadata
    assert meta["points_read"] == len(scan) + meta["duplicates_dropped"]
