"""A scientist edits a parameter in the pipeline file while its run goes on: the units keep the
configuration they started with. `pipeline status` warned of it; the viewer's page, where the
scientist is looking, said nothing. It now shows the same sentence, from the same check
(`runs.edits`), and takes it back when the file holds the run's pipeline again or the run
ends. A real `pipeline run --detach`, a real `pipeline view` on loopback, its `/events` and
the page in chromium."""

from __future__ import annotations

import subprocess

from test_browser import unit_row, wait_for
from test_viewer_run_end import (
    PIPELINE,
    WATCH_PIPELINE,
    _state,
    environment,
    events_until,
    pipeline,
)
from viewer_support import ARTIFACTS, read_events, start_view, stop_view


def _status_warning(stderr: str) -> str:
    """The sentence `pipeline status` warns with about the edit ("" when it says none)."""
    said = [line for line in stderr.splitlines() if " was edited after run " in line]
    return said[0].removeprefix("warning: ") if said else ""


def _edited(events: dict) -> str | None:
    return events.get("run", {}).get("edited")


def test_the_page_warns_of_a_file_edited_under_its_run_as_pipeline_status_does(tmp_path, page):
    file = tmp_path / "files.pipeline.yaml"
    file.write_text(WATCH_PIPELINE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    env = environment(tmp_path)
    pipeline("run", "--detach", file.name, cwd=tmp_path, env=env)
    try:
        view, url = start_view(file, env)
        try:
            running = events_until(url, lambda e: "run" in e and _state(e, "sink") == "running")
            assert running["run"]["state"] == "running", running.get("run")
            assert _edited(running) is None
            page.goto(url)
            wait_for(page, lambda: unit_row(page, "sink").get("state") == "running", "running")
            assert page.is_hidden("#edit-note")

            # a comment and blank lines: nothing the units would do differently
            file.write_text("# results go to out.jsonl\n" + WATCH_PIPELINE + "\n\n")
            assert _edited(read_events(url, 3.0)) is None
            assert page.is_hidden("#edit-note")

            file.write_text(WATCH_PIPELINE.replace("out.jsonl", "out-2.jsonl"))
            told = _status_warning(pipeline("status", str(file), cwd=tmp_path, env=env).stderr)
            assert told.startswith(f"{file} was edited after run r1's session started"), told
            events = events_until(url, _edited, timeout=20)
            assert _edited(events) == told
            wait_for(page, lambda: page.is_visible("#edit-note"), "the edit warning")
            # its words, the commands set as code
            assert page.text_content("#edit-text") == told.replace("`", "")
            commands = page.locator("#edit-text code").all_text_contents()
            assert commands == [f"pipeline stop {file}", f"pipeline run --resume {file}"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "viewer-file-edited.png"))

            # the file back as the run started it: the warning goes, without a reload
            file.write_text(WATCH_PIPELINE, encoding="utf-8")
            wait_for(page, lambda: page.is_hidden("#edit-note"), "the warning taken back")
            again = pipeline("status", str(file), cwd=tmp_path, env=env)
            assert _status_warning(again.stderr) == ""

            # edited again, then the run stopped: an ended run has no units to apply it to
            file.write_text(WATCH_PIPELINE.replace("out.jsonl", "out-2.jsonl"))
            wait_for(page, lambda: page.is_visible("#edit-note"), "the edit warning again")
            pipeline("stop", file.name, cwd=tmp_path, env=env)
            wait_for(page, lambda: page.text_content("#conn") == "run ended", "the run ended")
            assert page.is_hidden("#edit-note")
            assert page.problems == []
        finally:
            assert "Traceback" not in stop_view(view)
    finally:  # a test stopped half-way leaves no run behind (a stopped one: nothing to do)
        subprocess.run([PIPELINE, "stop", file.name], cwd=tmp_path, env=env, timeout=120)


def test_the_edit_warning_on_the_page_repeats_the_sessions_set(tmp_path):
    """The page's `edited` advice said `pipeline run --resume FILE`, which drops the
    session's `--set` (the run then went on under the file's own settings); it now repeats
    them, shell-quoted, in the words `pipeline status` gives."""
    file = tmp_path / "files.pipeline.yaml"
    file.write_text(WATCH_PIPELINE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    env = environment(tmp_path)
    pipeline("run", "--detach", file.name, "--set", "sink.path=out 2.jsonl", cwd=tmp_path, env=env)
    try:
        view, url = start_view(file, env)
        try:
            events_until(url, lambda e: "run" in e and _state(e, "sink") == "running")
            file.write_text(WATCH_PIPELINE.replace("watch: true", "watch: true, recursive: true"))
            told = _status_warning(pipeline("status", str(file), cwd=tmp_path, env=env).stderr)
            sets = "--set 'sink.path=\"out 2.jsonl\"'"
            assert told.endswith(
                f"`pipeline stop {file}` and `pipeline run --resume {file} {sets}` apply the edit "
                "to what they have not processed yet"
            ), told
            events = events_until(url, _edited, timeout=20)
            assert _edited(events) == told
        finally:
            assert "Traceback" not in stop_view(view)
    finally:
        subprocess.run([PIPELINE, "stop", file.name], cwd=tmp_path, env=env, timeout=120)
