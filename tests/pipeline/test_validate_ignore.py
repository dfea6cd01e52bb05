"""`pipeline validate --ignore CODE`: warnings a site knows to be harmless are left out, also
for `--strict`. Before, `--strict` refused every warning, P208 included: a folder a unit reads
that exists only on the cluster's nodes made a CI check fail for good, and dropping `--strict`
let every other warning through. The real `pipeline` command, on the file of the P208 golden
case plus a stream nobody reads (P307)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.pipeline import CODES

from helpers import run_pipeline

FILE = "night.pipeline.yaml"
#: core.files reads a folder that does not exist here (P208)
NIGHT = """\
pipeline: night
units:
  files:
    unit: core.files
    params: {directory: scans-of-tonight}
    outputs: {files: files}
  sink:
    unit: core.jsonl-sink
    params: {path: out.jsonl}
    inputs: {messages: files}
"""
#: the same, with a copy of the files written to a stream no unit reads (P307)
UNREAD = NIGHT.replace(
    "outputs: {files: files}",
    "outputs: {files: files}\n  again:\n"
    "    unit: core.files\n    params: {directory: scans-of-tonight}\n"
    "    outputs: {files: unread}",
)


@pytest.fixture
def night(tmp_path: Path) -> Path:
    (tmp_path / FILE).write_text(NIGHT)
    return tmp_path


def test_strict_with_ignore_p208_passes_and_says_what_it_left_out(night: Path) -> None:
    strict = run_pipeline("validate", "--strict", FILE, cwd=night)
    assert strict.returncode == 1
    assert strict.stderr == f"{FILE}: invalid under --strict (1 warning)\n"
    assert " warning P208 " in strict.stdout
    done = run_pipeline("validate", "--strict", "--ignore", "P208", FILE, cwd=night)
    assert done.returncode == 0, done.stdout + done.stderr
    # not shown, counted in one line
    assert done.stdout == ""
    assert done.stderr == f"{FILE}: valid\n1 problem ignored (P208)\n"
    # a code in lower case is the same code; --quiet prints nothing at all
    quiet = run_pipeline("validate", "--strict", "--ignore", "p208", "-q", FILE, cwd=night)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


def test_other_warnings_still_fail_strict(tmp_path: Path) -> None:
    (tmp_path / FILE).write_text(UNREAD)
    done = run_pipeline("validate", "--strict", "--ignore", "P208", FILE, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["P307"]
    assert done.stderr.splitlines() == [
        # not "valid" while it exits 1: the warning refuses it under --strict
        f"{FILE}: invalid under --strict (1 warning)",
        "2 problems ignored (P208)",
    ]
    # both left out: valid, also strictly
    both = run_pipeline(
        "validate", "--strict", "--ignore", "P208", "--ignore", "P307", FILE, cwd=tmp_path
    )
    assert both.returncode == 0, both.stdout + both.stderr
    assert both.stderr.splitlines()[-1] == "3 problems ignored (P208, P307)"


def test_json_counts_the_ignored_problems(night: Path) -> None:
    done = run_pipeline(
        "validate", "--json", "--strict", "--ignore", "P208", "--ignore", "P307", FILE, cwd=night
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["valid"] is True
    assert data["files"][0]["problems"] == []
    assert data["ignored"] == {"P208": 1, "P307": 0}


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("P209", "--ignore P209: no problem has that code"),
        ("P112", "--ignore P112: no problem has that code"),  # retired
        ("nonsense", "--ignore NONSENSE: no problem has that code"),
        ("P201", "--ignore P201: P201 is an error (the file would not run)"),
    ],
)
def test_a_code_it_cannot_ignore_is_refused_in_one_sentence(
    night: Path, code: str, why: str
) -> None:
    done = run_pipeline("validate", "--strict", "--ignore", code, FILE, cwd=night)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"error: {why}")
    assert "Traceback" not in done.stderr
    # it names every code it takes: the warnings'
    warnings = [c for c, (severity, _) in CODES.items() if severity == "warning"]
    assert "P208" in warnings
    assert done.stderr.rstrip().endswith("takes only the warning codes " + ", ".join(warnings))
