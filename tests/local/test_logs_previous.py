"""`pipeline logs FILE UNIT --previous`: the log of the session before the latest. A night's
session that failed, resumed in the morning, had its unit logs replaced by the resume's, and
the only place left with the night's failure was a directory no command read. Real `pipeline`
runs on the embedded store."""

from __future__ import annotations

from pathlib import Path

from helpers import run_pipeline

PIPELINE = """\
pipeline: night
units:
  files:
    unit: core.files
    params: {directory: files}
    outputs: {files: raw}
  sink:
    unit: core.jsonl-sink
    params: {path: out/all.jsonl, payload: text}
    inputs: {messages: raw}
"""
# a damaged output file: a configuration error its worker finds at start (a missing input
# folder is now refused by `pipeline run` before any session is recorded)
FAILED = "unit core.jsonl-sink failed to start: "


def test_the_previous_sessions_log_is_shown_after_a_resume(tmp_path: Path) -> None:
    file = tmp_path / "night.pipeline.yaml"
    file.write_text(PIPELINE)
    (tmp_path / "files").mkdir()
    damaged = tmp_path / "out" / "all.jsonl"
    damaged.parent.mkdir()
    damaged.write_text("not a record\n")
    night = run_pipeline("run", str(file), cwd=tmp_path)  # its output file is damaged
    assert FAILED in night.stderr, night.stderr
    nothing_kept = run_pipeline("logs", str(file), "sink", "--previous", cwd=tmp_path)
    assert nothing_kept.returncode == 1
    assert nothing_kept.stderr.startswith("error: no earlier session is kept in "), (
        nothing_kept.stderr
    )
    assert len(nothing_kept.stderr.splitlines()) == 1

    damaged.unlink()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    morning = run_pipeline("run", "--resume", str(file), cwd=tmp_path)
    assert morning.returncode == 0, morning.stderr

    latest = run_pipeline("logs", str(file), "sink", "--stderr", cwd=tmp_path)
    assert latest.returncode == 0, latest.stderr
    assert FAILED not in latest.stdout
    assert "sink finished: 1 received, 1 processed" in latest.stdout, latest.stdout
    previous = run_pipeline("logs", str(file), "sink", "--stderr", "--previous", cwd=tmp_path)
    assert previous.returncode == 0, previous.stderr
    assert FAILED in previous.stdout, previous.stdout
    assert "1 processed" not in previous.stdout
    # both streams by default, on stdout; and an ended session does not grow
    both = run_pipeline("logs", str(file), "sink", "--previous", cwd=tmp_path)
    assert FAILED in both.stdout
    assert both.stderr == ""
    followed = run_pipeline("logs", str(file), "sink", "--previous", "-f", cwd=tmp_path)
    assert followed.returncode == 2
    assert followed.stderr == (
        "error: --previous shows an ended session's log, which --follow cannot\n"
    )


def test_previous_is_refused_by_an_executor_that_has_no_such_option(tmp_path: Path) -> None:
    file = tmp_path / "night.pipeline.yaml"
    file.write_text(PIPELINE)
    done = run_pipeline(
        "logs", str(file), "files", "--previous", "--executor", "nomad", cwd=tmp_path,
        env={"NOMAD_ADDR": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "error: the nomad executor has no --previous option for `pipeline logs`\n"
    assert "Traceback" not in done.stderr


def test_a_negative_replica_is_refused_not_read_as_replica_0(tmp_path: Path) -> None:
    """`--replica -1` printed replica 0's log, exit 0 (an outside tester); `--replica 1` of a
    unit with one replica already said `unit files has no replica 1`."""
    file = tmp_path / "night.pipeline.yaml"
    file.write_text(PIPELINE)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a\n")
    assert run_pipeline("run", str(file), cwd=tmp_path).returncode == 0
    shown = run_pipeline("logs", str(file), "files", "--replica", "-1", cwd=tmp_path)
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "'--replica': -1 is not in the range x>=0" in shown.stderr, shown.stderr
    assert shown.stdout == ""
