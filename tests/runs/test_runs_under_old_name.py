"""`pipeline runs FILE` after FILE's `pipeline:` was renamed while a deployment of it runs: the
runs and the deployment are recorded under the old name. Before, `runs` said only "pipeline
NEW has no runs in this store yet"; now one line says how many runs the file has under its
old name, the last one's state, and to put `pipeline: OLD` back to list or go on with them
(`status` and `stop` find a local run that goes on as the file is). Another file's pipeline
in the same store is not named. Real `pipeline` commands, a real detached run, the embedded
store."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_pipeline, wait_for


def _doc(name: str, watch: bool) -> dict:
    return {
        "pipeline": name,
        "transport": {"embedded": {"path": "store"}},
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "in", "watch": watch},
                "outputs": {"files": "raw"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": f"{name}.jsonl", "payload": "text"},
                "inputs": {"messages": "raw"},
            },
        },
    }


def _ok(*args: str, cwd: Path):
    done = run_pipeline(*args, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_runs_names_the_deployment_under_the_old_pipeline_name(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a\n")
    other = tmp_path / "other.pipeline.yaml"  # another file's pipeline in the same store
    other.write_text(json.dumps(_doc("other", watch=False)))
    _ok("run", other.name, cwd=tmp_path)
    file = tmp_path / "beam.pipeline.yaml"
    file.write_text(json.dumps(_doc("before", watch=True)))
    _ok("run", file.name, "--detach", cwd=tmp_path)
    try:
        wait_for(
            lambda: json.loads(_ok("runs", file.name, "--json", cwd=tmp_path).stdout)["runs"],
            timeout=60,
            what="the run record",
        )
        file.write_text(json.dumps(_doc("after", watch=True)))  # `pipeline:` renamed
        done = _ok("runs", file.name, cwd=tmp_path)
        assert done.stdout.strip() == "pipeline after has no runs in this store yet", done.stdout
        # the run goes on: `status` and `stop` find it as the file is now (the line said
        # to put `pipeline: before` back to stop it); listing and resuming need the old name
        assert done.stderr.strip() == (
            f"warning: {file.name} has 1 run under its old name before (the last, r1, "
            f"running, found by `pipeline status {file.name}` and `stop` as the file is "
            f"now): put `pipeline: before` back in {file.name} to list or go on with them"
        ), done.stderr
        # --json's stdout stays one document; the line is on stderr
        listed = _ok("runs", file.name, "--json", cwd=tmp_path)
        assert json.loads(listed.stdout) == {"pipeline": "after", "runs": []}
        assert "old name before" in listed.stderr, listed.stderr
        # what the line says holds
        assert "job before" in _ok("status", file.name, cwd=tmp_path).stdout
        assert "stopped" in _ok("stop", file.name, cwd=tmp_path).stdout
    finally:
        file.write_text(json.dumps(_doc("before", watch=True)))
        run_pipeline("stop", file.name, cwd=tmp_path, timeout=120)
