"""Output people read: 80 columns and pipes, kinds as --kind spells them, NO_COLOR, and --json
on the commands that report."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CACHE_DIR, PIPELINE, run_pipeline

NARROW = {"COLUMNS": "80"}


def _tty_run(*args: str, env: dict[str, str]) -> bytes:
    """Run `pipeline` with its stdout and stderr on a pseudo-terminal, as in a shell."""
    main, sub = pty.openpty()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ASAPO_PIPELINES_", "NO_"))}
    full.update({"ASAPO_PIPELINES_CACHE_DIR": CACHE_DIR, "TERM": "xterm-256color", **env})
    proc = subprocess.Popen([PIPELINE, *args], stdout=sub, stderr=sub, env=full)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main)
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminals as on Linux")
def test_no_color_is_honoured_on_a_terminal():
    coloured = _tty_run("tail", "no-such.pipeline.yaml", "x", env={})
    assert b"\x1b[" in coloured  # the check can fail: colour is on by default on a terminal
    plain = _tty_run("tail", "no-such.pipeline.yaml", "x", env={"NO_COLOR": "1"})
    assert b"error: " in plain
    assert b"\x1b[" not in plain


def test_list_units_reads_at_80_columns_and_piped():
    shown = run_pipeline("list-units", env=NARROW)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    text = " ".join(line.strip() for line in lines)
    # summaries are whole sentences, not a few letters a line
    assert "Reads XAS scan files (P65, XDI 1.0, DESY FIO), one message per scan." in text
    assert "xas.scan-files  connector (source)" in shown.stdout


def test_kinds_shown_are_the_ones_kind_accepts():
    listed = json.loads(run_pipeline("list-units", "--json").stdout)["units"]
    kinds = {u["kind"] for u in listed}
    for kind in kinds:
        assert run_pipeline("list-units", "--kind", kind).returncode == 0
    sources = json.loads(run_pipeline("list-units", "--kind", "source", "--json").stdout)
    assert {u["name"] for u in sources["units"]} >= {"core.files", "xas.scan-files"}
    assert {u["role"] for u in sources["units"]} == {"source"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    assert run_pipeline("new", "small", cwd=folder).returncode == 0
    (folder / "data" / "one.txt").write_text("1")
    ran = run_pipeline("run", "small.pipeline.yaml", "--json", cwd=folder)
    assert ran.returncode == 0, ran.stderr
    (folder / "run.json").write_text(ran.stdout)
    return folder


def test_streams_reads_at_80_columns(small_run):
    shown = run_pipeline("streams", "small.pipeline.yaml", cwd=small_run, env=NARROW)
    assert shown.returncode == 0, shown.stderr
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80
    assert "\u2026" not in shown.stdout  # nothing cut off
    assert "default: 1 messages" in shown.stdout


def test_run_stop_validate_new_report_json(small_run, tmp_path):
    ran = json.loads((small_run / "run.json").read_text())
    assert ran["status"] == "complete"
    assert {u["group"]: u["counters"]["processed"] for u in ran["units"]}["identity"] == 1
    stopped = run_pipeline("stop", "small.pipeline.yaml", "--json", cwd=small_run)
    assert json.loads(stopped.stdout)["was_running"] is False
    checked = run_pipeline("validate", "small.pipeline.yaml", "--json", cwd=small_run)
    assert json.loads(checked.stdout)["valid"] is True
    made = run_pipeline("new", "other", "--json", cwd=tmp_path)
    assert json.loads(made.stdout)["file"] == "other.pipeline.yaml"


def test_shell_completion_completes_unit_and_stream_names(small_run):
    def complete(words: str, cword: int) -> list[str]:
        env = {"_PIPELINE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        shown = run_pipeline(cwd=small_run, env=env)
        assert shown.returncode == 0, shown.stderr
        return [line.split(",", 1)[1] for line in shown.stdout.splitlines()]

    assert complete("pipeline show-unit xas.n", 2) == ["xas.normalize"]
    assert complete("pipeline new x -u core.j", 4) == ["core.jsonl-sink"]
    assert complete("pipeline tail small.pipeline.yaml fi", 3) == ["files"]
    script = run_pipeline(env={"_PIPELINE_COMPLETE": "bash_source"})
    assert "_pipeline_completion" in script.stdout
    # the documented lines are the ones that work
    reference = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    assert 'eval "$(_PIPELINE_COMPLETE=bash_source pipeline)"' in reference
