"""`pipeline new` writes files that validate and run; required values are never silently empty."""

from __future__ import annotations

import json

from ruamel.yaml import YAML

from helpers import run_pipeline


def test_default_starter_validates_and_runs(tmp_path):
    made = run_pipeline("new", "x", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    info = json.loads(made.stdout)
    assert info["file"] == "x.pipeline.yaml"
    assert (tmp_path / "data").is_dir()  # the directory core.files reads exists
    (tmp_path / "data" / "a.txt").write_text("hello")
    checked = run_pipeline("validate", "x.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = run_pipeline("run", "x.pipeline.yaml", cwd=tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    lines = (tmp_path / "results" / "out.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["metadata"]["name"] == "a.txt"


def test_documented_xas_starter_wires_each_writer_input_to_its_own_stream(tmp_path):
    made = run_pipeline(
        "new",
        "demo2",
        "-u",
        "xas.scan-files",
        "-u",
        "xas.normalize",
        "-u",
        "nexus.writer",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    doc = YAML(typ="safe").load((tmp_path / "demo2.pipeline.yaml").read_text())
    assert doc["units"]["writer"]["inputs"] == {"scans": "scans", "spectra": "spectra"}
    checked = run_pipeline("validate", "demo2.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_processor_first_reads_a_declared_external_stream(tmp_path):
    made = run_pipeline("new", "p", "-u", "xas.normalize", "-u", "core.jsonl-sink", cwd=tmp_path)
    assert "declared external" in made.stderr
    doc = YAML(typ="safe").load((tmp_path / "p.pipeline.yaml").read_text())
    assert doc["streams"]["normalize-scans"] == {"external": True, "content_type": "xas/scan"}
    assert run_pipeline("validate", "p.pipeline.yaml", cwd=tmp_path).returncode == 0


def test_validate_rejects_an_empty_required_value(tmp_path):
    (tmp_path / "e.pipeline.yaml").write_text(
        "pipeline: e\nunits:\n  files:\n    unit: core.files\n"
        '    params: {directory: ""}\n    outputs: {files: files}\n'
        "  sink:\n    unit: core.jsonl-sink\n    params: {path: out.jsonl}\n"
        "    inputs: {messages: files}\n"
    )
    checked = run_pipeline("validate", "e.pipeline.yaml", cwd=tmp_path)
    assert checked.returncode == 1
    assert "P206 units.files.params.directory: a value is required" in checked.stdout
