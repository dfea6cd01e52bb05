"""What a night operator watching `pipeline view` was told wrong, and is now told as `pipeline
status` and the run records tell it: a folder with no run is not a live, idle pipeline; an
edit that broke the file is not answered with commands that refuse it; a finished batch run
says how it ended; an error record without a message has no `message: null`; one message is
not "1 messages". Real `pipeline` commands, a real `pipeline view` on loopback, its `/events`
read as `curl -sN` reads them, and the page in chromium."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time

from test_browser import wait_for
from test_viewer_run_end import (
    PIPELINE,
    WATCH_PIPELINE,
    _state,
    environment,
    events_until,
    pipeline,
)
from viewer_support import start_view, stop_view

from asapo_pipelines.transport import formats
from asapo_pipelines.transport.embedded import EmbeddedTransport
from asapo_pipelines.viewer.model import PipelineView, UnitView
from asapo_pipelines.worker.naming import errors_source

BATCH_PIPELINE = WATCH_PIPELINE.replace("files-watch", "files-batch").replace(
    "watch: true", "watch: false"
)


def _run(events: dict) -> dict:
    return events.get("run", {})


def test_a_folder_without_a_run_says_so_and_picks_up_a_run_started_later(tmp_path, page):
    file = tmp_path / "files.pipeline.yaml"
    file.write_text(WATCH_PIPELINE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    env = environment(tmp_path)
    view, url = start_view(file, env)
    try:
        run = _run(events_until(url, lambda e: "run" in e and "units" in e, timeout=20))
        # before: {"id": null, "state": "running", "ended": false, "message": ""}
        assert (run["id"], run["state"], run["ended"]) == (None, "no run", False), run
        assert run["message"] == (
            f"no local run of {file} is recorded; start one with `pipeline run`"
        )
        page.goto(url)
        wait_for(page, lambda: page.text_content("#conn") == "no run", "the no-run badge")
        assert "live" not in (page.get_attribute("#conn", "class") or "")
        assert page.is_visible("#run-note")
        assert page.locator("#run-note code").all_text_contents() == ["pipeline run"]

        pipeline("run", "--detach", file.name, cwd=tmp_path, env=env)
        # the page was left open: the run shows without a reload
        wait_for(page, lambda: page.text_content("#conn") == "live", "the run live")
        assert page.is_hidden("#run-note")
        events = events_until(url, lambda e: _state(e, "sink") == "running")
        assert (_run(events)["id"], _run(events)["state"]) == ("r1", "running")
        assert page.problems == []
    finally:
        assert "Traceback" not in stop_view(view)
        subprocess.run([PIPELINE, "stop", file.name], cwd=tmp_path, env=env, timeout=120)


def test_an_edit_that_breaks_the_file_is_said_with_a_stop_that_works(tmp_path):
    file = tmp_path / "files.pipeline.yaml"
    file.write_text(WATCH_PIPELINE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    env = environment(tmp_path)
    pipeline("run", "--detach", file.name, cwd=tmp_path, env=env)
    try:
        view, url = start_view(file, env)
        try:
            events_until(url, lambda e: _state(e, "sink") == "running")
            with file.open("a", encoding="utf-8") as fh:
                fh.write("units: [broken\n")
            said = pipeline("validate", str(file), cwd=tmp_path, env=env, code=1)
            first = next(line for line in said.stdout.splitlines() if " error P" in line)
            edited = events_until(url, lambda e: _run(e).get("edited"), timeout=20)
            told = _run(edited)["edited"]
            # before: "... `pipeline stop FILE` and `pipeline run --resume FILE` apply the
            # edit", and `pipeline stop FILE` then refused with P002
            pipeline("stop", str(file), cwd=tmp_path, env=env, code=1)
            assert "apply the edit" not in told, told
            assert f"does not validate now ({first})" in told, told
            stop = re.search(r"`(pipeline stop --run-dir [^`]+)`", told)
            assert stop, told
            pipeline(*shlex.split(stop.group(1))[1:], cwd=tmp_path, env=env)
            ended = events_until(url, lambda e: _run(e).get("ended"), timeout=60)
            assert _run(ended)["state"] == "stopped"
        finally:
            assert "Traceback" not in stop_view(view)
    finally:
        subprocess.run([PIPELINE, "stop", file.name], cwd=tmp_path, env=env, timeout=120)


def test_a_finished_batch_run_says_how_it_ended(tmp_path, page):
    file = tmp_path / "files.pipeline.yaml"
    file.write_text(BATCH_PIPELINE, encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("one\n")
    env = environment(tmp_path)
    pipeline("run", file.name, cwd=tmp_path, env=env)
    runs = json.loads(pipeline("runs", file.name, "--json", cwd=tmp_path, env=env).stdout)
    record = runs["runs"][-1]
    message = record["session_list"][-1]["message"]
    view, url = start_view(file, env)
    try:
        page.goto(url)
        wait_for(page, lambda: page.text_content("#conn") == "run ended", "the run ended")
        # before: "run ended" and no sentence, where a stopped run says why
        wait_for(page, lambda: page.is_visible("#run-note"), "the run's sentence")
        assert page.text_content("#run-note") == f"run {record['id']} complete: {message}"
        assert page.problems == []
    finally:
        assert "Traceback" not in stop_view(view)


def test_an_error_without_a_message_and_a_single_message_read_right(page, serve, tmp_path):
    store = str(tmp_path / "store")
    view = PipelineView(
        name="one-demo",
        transport={"embedded": {"path": store}},
        units=(UnitView("sink", _sink(), inputs={"messages": "raw"}),),
    )
    with EmbeddedTransport(store) as transport:
        with transport.producer("raw") as producer:
            payload, meta = formats.encode({"x": 1}, "json")
            producer.send("default", payload, meta)
        with transport.producer(errors_source("one-demo")) as producer:
            # a unit's on_end failing: no input message to name
            record = {"unit": "sink", "exception": "OSError", "error": "disk gone"}
            payload, meta = formats.encode(record, "json")
            producer.send("sink", payload, {**meta, "unit": "sink"})
        page.goto(serve(view, transport))
        page.wait_for_selector("#errors li")
        page.click("#errors summary")
        opened = page.text_content("#errors li")
        assert "null" not in opened, opened  # before: "message: null"
        line1 = '#graph [data-node="s:raw"] [data-field="line1"]'
        deadline = time.monotonic() + 30
        while page.text_content(line1) in ("", None) and time.monotonic() < deadline:
            page.wait_for_timeout(100)
        assert page.text_content(line1) == "1 message"  # before: "1 messages"
        assert page.problems == []


def _sink():
    from asapo_pipelines.catalog import Catalog

    return Catalog.load().get("core.jsonl-sink")
