"""`pipeline status FILE --json` when no local run of FILE is recorded (never run, or its run
pruned): a tool parsing stdout gets one JSON document with the keys of a run's document, the
sentence stays on stderr, and the exit code is that of `status` without --json. Real
`pipeline` commands, a real embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import files_to_sink, run_pipeline

#: Nomad is asked nowhere here: a closed port makes any question to it fail loudly
NO_NOMAD = {"NOMAD_ADDR": "http://127.0.0.1:9"}


def write_local_pipeline(directory: Path) -> Path:
    """files -> jsonl-sink over two files, its deploy section naming the local executor."""
    return files_to_sink(directory, "quiet", deploy={"local": {}})


def status_both_ways(*args: str, cwd: Path) -> tuple[dict, int, str]:
    """`status ARGS --json` parsed, checked against `status ARGS`: same exit code, same
    sentence on stderr, nothing on stdout but the document."""
    text = run_pipeline("status", *args, env=NO_NOMAD, cwd=cwd)
    shown = run_pipeline("status", *args, "--json", env=NO_NOMAD, cwd=cwd)
    assert shown.returncode == text.returncode, shown.stdout + shown.stderr
    assert shown.stderr == text.stderr
    assert "Traceback" not in shown.stderr
    return json.loads(shown.stdout), shown.returncode, shown.stderr


def test_status_json_before_any_run_is_a_document_of_no_run(tmp_path: Path) -> None:
    file = write_local_pipeline(tmp_path)
    doc, code, said = status_both_ways(file.name, cwd=tmp_path)
    assert code == 2
    assert said.startswith("error: no local run of quiet.pipeline.yaml is recorded"), said
    assert (doc["status"], doc["run"], doc["units"]) == ("not started", None, [])
    assert doc["job"] == "quiet"
    assert doc["message"] in said
    assert (doc["summaries"], doc["summary_lines"]) == ({}, [])

    done = run_pipeline("run", file.name, env=NO_NOMAD, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = run_pipeline("status", file.name, "--json", env=NO_NOMAD, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_doc = json.loads(ran.stdout)
    assert run_doc["status"] == "complete"
    # a tool reads the same keys before a run as after it
    assert set(doc) == set(run_doc)
    assert doc["run_dir"] == run_doc["run_dir"]
    assert doc["pipeline_file"] == run_doc["pipeline_file"]

    # its only run pruned, the file has no run again: the same document
    pruned = run_pipeline("prune", file.name, "--run", "r1", env=NO_NOMAD, cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    again, code, _ = status_both_ways(file.name, cwd=tmp_path)
    assert code == 2
    assert (again["status"], again["run"], again["units"]) == ("not started", None, [])


def test_status_json_of_an_empty_run_directory_is_a_document_of_no_run(tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    doc, code, said = status_both_ways("--run-dir", str(empty), cwd=tmp_path)
    assert code == 2
    assert said == f"error: no local run recorded in {empty}\n"
    assert (doc["status"], doc["run_dir"], doc["units"]) == ("not started", str(empty), [])


def test_status_json_of_a_compiled_job_never_run_is_a_document_of_no_run(tmp_path: Path) -> None:
    file = write_local_pipeline(tmp_path)
    planned = run_pipeline(
        "plan", file.name, "--executor", "nomad", "--json", env=NO_NOMAD, cwd=tmp_path
    )
    assert planned.returncode == 0, planned.stderr
    (tmp_path / "job.json").write_text(planned.stdout)
    doc, code, said = status_both_ways("job.json", cwd=tmp_path)
    assert code == 2
    assert said.startswith("error: no local run of job.json is recorded"), said
    assert (doc["status"], doc["units"]) == ("not started", [])
