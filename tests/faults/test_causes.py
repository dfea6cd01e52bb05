"""Item 7 of #12 and the first "Running" item of #18: the cause of a failure is on the console.
Configuration errors fail at once (not restarted five times) with their reason; a task that
fails for good shows its last error, and the resume after it says so (`(unchanged); its last
session failed at ...`); a damaged JSON-lines file names its line; the viewer and a
worker's status thread survive transport failures."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from faults_support import core_pipeline, env, pipeline, read_state, write_files

from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.naming import data_source_for
from asapo_pipelines.worker.status import Counters, StatusPublisher

from helpers import PIPELINE

NS = 1_000_000_000


def _damaged_sink_file(tmp_path: Path) -> Path:
    """files -> sink, the sink's output file damaged: its worker fails at start, for good,
    naming the relative path and what it is relative to (a message ending in parentheses)."""
    doc = {
        "pipeline": "nodata",
        "units": {
            "files": {
                "unit": "core.files",
                "params": {"directory": "nodata/"},
                "outputs": {"files": "raw"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out.jsonl"},
                "inputs": {"messages": "raw"},
            },
        },
    }
    file = tmp_path / "nodata.pipeline.yaml"
    file.write_text(json.dumps(doc))
    # a damaged file the sink must append to: found by its worker at start (a missing input
    # folder, the error this test began with, is now refused before the run starts)
    (tmp_path / "nodata").mkdir()
    (tmp_path / "out.jsonl").write_text("not a record\n")
    return file


def test_a_configuration_error_fails_at_once_with_its_reason_and_status_says_failed(
    tmp_path: Path,
) -> None:
    file = _damaged_sink_file(tmp_path)
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: sink[0] failed for good: unit core.jsonl-sink failed to start: out.jsonl line 1 "
        "is not a JSON object (Expecting value); repair or remove that line, or move the file "
        "aside to start a new one (relative paths in a pipeline file are relative to its "
        f"folder, {tmp_path}) (exit code 78: a restart cannot fix it, so it was not restarted)"
    )
    state = read_state(tmp_path / ".pipeline-data" / "runs" / "nodata")
    assert state is not None
    assert state["status"] == "failed"
    sink = next(u for u in state["units"] if u["group"] == "sink")
    assert sink["restarts"] == 0
    assert sink["exit_codes"] == [78]

    status = pipeline("status", str(file), cwd=tmp_path)
    assert status.returncode == 1
    assert "failed for good" in status.stdout
    assert pipeline("status", str(file), "--json", cwd=tmp_path).returncode == 1


def test_resume_after_a_failed_session_says_its_end_after_the_parenthesis(tmp_path: Path):
    """The resume line read "(unchanged; its last session failed at T: <message>)", ending in
    `))` when the message ends in a parenthesis of its own, as this one does (`... (exit code
    78: ...)`). The last session's end now follows the parenthesis."""
    file = _damaged_sink_file(tmp_path)
    first = pipeline("run", str(file), cwd=tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    again = pipeline("run", str(file), cwd=tmp_path)
    assert again.returncode == 1, again.stdout + again.stderr

    listed = pipeline("runs", str(file), "--json", cwd=tmp_path)
    failed = json.loads(listed.stdout)["runs"][0]["session_list"][0]
    assert failed["state"] == "failed"
    message = failed["message"]
    assert message.endswith(")"), message  # the case the line read `))` in
    clock = time.strftime("%H:%M:%S", time.localtime(failed["ended"]))
    said = again.stdout.splitlines()[0]
    assert said == (
        f"resuming run r1 of pipeline nodata (unchanged); its last session failed at {clock}: "
        f"{message}"
    )
    assert not said.endswith("))"), said


def test_a_task_that_fails_for_good_shows_its_last_error(tmp_path: Path) -> None:
    crash = (
        "import sys\n"
        "print('connecting to the broker', file=sys.stderr)\n"
        "print('error: the ASAP::O broker at broker.example:8400 refused the token', "
        "file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    job = {
        "Job": {
            "ID": "crash",
            "Name": "crash",
            "Type": "batch",
            "TaskGroups": [
                {
                    "Name": "merge",
                    "Count": 1,
                    "RestartPolicy": {
                        "Attempts": 1,
                        "Interval": 60 * NS,
                        "Delay": NS // 20,
                        "Mode": "fail",
                    },
                    "Tasks": [
                        {
                            "Name": "merge",
                            "Driver": "raw_exec",
                            "Config": {"command": sys.executable, "args": ["-c", crash]},
                        }
                    ],
                }
            ],
        }
    }
    job_file = tmp_path / "crash.json"
    job_file.write_text(json.dumps(job))
    done = pipeline("run", str(job_file), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("; its last error: the ASAP::O broker at broker.example:8400 refused the token")
    )
    assert "merge[0] failed for good: it exited with code 1 after 1 restart" in done.stderr


@pytest.mark.parametrize("broken", ['{"id": 2, "metad', "[2]"], ids=["cut", "not-an-object"])
def test_a_broken_line_in_an_existing_json_lines_output_is_named(
    tmp_path: Path, broken: str
) -> None:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 3)
    out.write_text(f'{{"id": 1, "metadata": {{}}}}\n{broken}\n{{"id": 3, "metadata": {{}}}}\n')
    file = core_pipeline(tmp_path, files=files, out=out)
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"{out} line 2 is not a JSON object" in last
    assert "repair or remove that line" in last
    assert "was not restarted" in last
    assert "JSONDecodeError" not in done.stderr


def damage(index: Path) -> None:
    import os
    import sqlite3

    with sqlite3.connect(index) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(index, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(index.stat().st_size - 4096))


def get(url: str, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def serve(file: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [PIPELINE, "view", str(file), "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), "PYTHONUNBUFFERED": "1"},
        cwd=file.parent,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    assert match, line
    return proc, match.group(1)


def finish(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.stderr.read() if proc.stderr else ""


def test_viewer_answers_a_clear_error_when_the_transport_fails(tmp_path: Path) -> None:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 5)
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    assert pipeline("run", str(file), cwd=tmp_path).returncode == 0
    # the pipeline's own stream `raw`, in its namespace (`<pipeline>.<run>.<stream>`)
    index = tmp_path / "store" / data_source_for("raw", "faults", "r1") / "index.db"
    damage(index)
    proc, url = serve(file)
    try:
        status, body = get(url + "api/messages?stream=raw")
        assert status == 503
        answer = json.loads(body)
        assert answer["error"].startswith("cannot read stream raw: the store of data source")
        assert str(index) in answer["error"]
        assert "Traceback" not in answer["error"]
        assert get(url + "api/pipeline")[0] == 200  # the rest of the page keeps working
    finally:
        rest = finish(proc)
    assert "Traceback" not in rest


def test_allow_remote_keeps_the_host_check_on_a_loopback_bind(tmp_path: Path) -> None:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 1)
    file = core_pipeline(tmp_path, files=files, out=out)
    proc, url = serve(file, "--allow-remote")
    try:
        assert get(url)[0] == 200
        # a page elsewhere whose name resolves to 127.0.0.1 (DNS rebinding) is turned away
        assert get(url, host="attacker.example")[0] == 400
        assert get(url, host="attacker.example:80")[0] == 400
    finally:
        finish(proc)


def test_the_status_thread_survives_transport_errors(tmp_path: Path, tmpfs, caplog) -> None:
    fs = tmpfs("1m")
    transport = open_transport({"embedded": {"path": str(fs.path / "store")}})
    counters = Counters(unit="core.identity", instance="copy", replica=0)
    publisher = StatusPublisher(transport, "survive", counters, interval=0.05)

    def latest() -> dict:
        with transport.consumer("survive.status", "reader") as c:
            return dict(c.get_last("copy.0").metadata)

    caplog.set_level(logging.WARNING, logger="asapo_pipelines.worker")
    publisher.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                latest()
                break
            except Exception:
                time.sleep(0.05)
        fs.fill()  # the store's disk is full: every publication fails

        def warnings_so_far() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "cannot publish the status counters" in r.message]

        # the first failure, however late a loaded machine's status thread gets to it; then
        # a second of failures more (one every 0.2 s), each of which must not be said again
        deadline = time.monotonic() + 30
        while not warnings_so_far() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        warnings = warnings_so_far()
        assert warnings, "the failure was not reported"
        assert len({r.message for r in warnings}) == 1  # one line per distinct failure
        assert not any(r.exc_info for r in warnings)
        assert publisher._thread is not None
        assert publisher._thread.is_alive()

        fs.free()
        counters.processed = 4242  # published again once the disk has room
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and latest().get("processed") != 4242:
            time.sleep(0.05)
        assert latest()["processed"] == 4242
    finally:
        publisher.stop("finished")
        transport.close()
    assert latest_state(fs.path / "store") == "finished"


def latest_state(store: Path) -> str:
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer("survive.status", "reader2") as c,
    ):
        return str(c.get_last("copy.0").metadata["state"])
