"""After a real local run of the documented XAS starter: `logs` shows both of a unit's streams,
`tail` prints a stream's messages decoded, `status --json` carries counters and summaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import run_pipeline

DATA = Path(__file__).parents[2] / "examples" / "data"


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """`pipeline new demo2 ...` as docs/pipeline-files.md shows it, three real scans (one of
    them, fe_metal_rt, has no `it` channel and goes to the error stream), `pipeline run`."""
    folder = tmp_path_factory.mktemp("demo2")
    made = run_pipeline(
        "new",
        "demo2",
        "-u",
        "xas.scan-files",
        "-u",
        "xas.normalize",
        "-u",
        "nexus.writer",
        cwd=folder,
    )
    assert made.returncode == 0, made.stderr
    for name in ("20K_GOE_Fe_K_240.00000.xdi", "20K_GOE_Fe_K_240.00001.xdi", "fe_metal_rt.xdi"):
        shutil.copy(DATA / name, folder / "data" / name)
    result = run_pipeline("run", "demo2.pipeline.yaml", cwd=folder, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_logs_show_the_units_stdout_and_stderr(ran):
    shown = run_pipeline("logs", "demo2.pipeline.yaml", "normalize", cwd=ran)
    assert shown.returncode == 0
    # the worker logs to stderr: it is shown (on stdout, for pipes) without asking for it
    assert "normalize" in shown.stdout
    assert "fe_metal_rt.xdi" in shown.stdout
    only = run_pipeline("logs", "demo2.pipeline.yaml", "normalize", "--stderr", cwd=ran)
    assert only.stdout
    assert shown.stdout.endswith(only.stdout)
    assert shown.stderr == ""


def test_tail_prints_decoded_messages_and_error_records(ran):
    spectra = run_pipeline("tail", "demo2.pipeline.yaml", "spectra", "--json", cwd=ran)
    assert spectra.returncode == 0, spectra.stderr
    records = [json.loads(line) for line in spectra.stdout.splitlines()]
    assert len(records) == 2
    assert {r["value"]["metadata"]["file"] for r in records} == {
        "20K_GOE_Fe_K_240.00000.xdi",
        "20K_GOE_Fe_K_240.00001.xdi",
    }
    assert all(isinstance(r["value"]["arrays"]["norm"], list) for r in records)
    # a line cut for an 80-column terminal (into a pipe, as here, only with --width: lines
    # written to a file or a pipe are whole, test_tail_width.py)
    errors = run_pipeline("tail", "demo2.pipeline.yaml", "errors", "--width", "80", cwd=ran)
    (line,) = errors.stdout.splitlines()
    assert "fe_metal_rt.xdi" in line
    assert len(line) <= 80
    one = run_pipeline("tail", "demo2.pipeline.yaml", "spectra", "-n", "1", "--json", cwd=ran)
    assert len(one.stdout.splitlines()) == 1
    wrong = run_pipeline("tail", "demo2.pipeline.yaml", "spectrum", cwd=ran)
    assert wrong.returncode == 2
    assert "did you mean spectra?" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_status_json_has_counters_and_summaries(ran):
    shown = run_pipeline("status", "demo2.pipeline.yaml", "--json", cwd=ran)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    units = {u["group"]: u for u in data["units"]}
    assert units["normalize"]["counters"]["received"] == 3
    assert units["normalize"]["counters"]["processed"] == 2
    assert units["normalize"]["counters"]["errors"] == 1
    assert units["scan_files"]["summary"]["scans_sent"] == 3
    assert data["summaries"]["writer[0]"]["spectra_written"] == 2
    assert any(line.startswith("normalize: ") for line in data["summary_lines"])
