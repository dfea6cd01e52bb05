"""xas.scan-files reading the files present (not watching) whose pattern matches no file says
so in one warning naming the directory and the pattern: before, the run ended with
`scans_sent 0` and nothing else, a mistyped pattern looking like an empty beamtime."""

from __future__ import annotations

import shutil

from xas_procs import pipeline_command, write_pipeline
from xas_testdata import DATA

WARNING = "scans[0] WARNING no scan file in data matches pattern '*.xdi'"


def pipeline_of(tmp_path, pattern: str = "*.xdi"):
    return write_pipeline(
        tmp_path,
        "nomatch",
        {
            "scans": {
                "unit": "xas.scan-files",
                "params": {"directory": "data", "pattern": pattern},
                "outputs": {"scans": "raw-scans"},
            },
        },
    )


def test_a_pattern_matching_no_file_is_a_warning_naming_directory_and_pattern(tmp_path):
    (tmp_path / "data").mkdir()
    # the scans were saved as .dat: `*.xdi` matches none of them
    for name in ("cu_metal_rt.xdi", "fe_metal_rt.xdi"):
        shutil.copy(DATA / name, tmp_path / "data" / name.replace(".xdi", ".dat"))
    pipeline = pipeline_of(tmp_path)
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout + run.stderr
    assert "scans_sent 0" in out
    assert WARNING in out  # `pipeline run` shows it (wrapped at the terminal's width)
    assert out.count("WARNING") == 1
    log = pipeline_command(pipeline, "logs", "scans")
    assert (
        f"{WARNING} (it holds 2 other files: cu_metal_rt.dat, fe_metal_rt.dat): nothing is read\n"
    ) in log.stdout + log.stderr


def test_an_empty_directory_is_said_to_be_empty(tmp_path):
    (tmp_path / "data").mkdir()
    pipeline = pipeline_of(tmp_path)
    run = pipeline_command(pipeline, "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert WARNING in run.stdout + run.stderr
    log = pipeline_command(pipeline, "logs", "scans")
    assert f"{WARNING} (it holds no files): nothing is read\n" in log.stdout + log.stderr


def test_a_pattern_that_matches_gives_no_warning(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(DATA / "cu_metal_rt.xdi", tmp_path / "data")
    run = pipeline_command(pipeline_of(tmp_path), "run")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "scans_sent 1" in run.stdout
    assert "WARNING" not in run.stdout + run.stderr
