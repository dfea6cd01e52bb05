"""`pipeline worker` and `pipeline status` with the core's own units."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from procs import own, read_stream, wait_until, write_pipeline

from asapo_pipelines.transport import open_transport

from helpers import CACHE_DIR, PIPELINE, run_pipeline


def core_pipeline(tmp_path):
    (tmp_path / "files").mkdir()
    for i in range(3):
        (tmp_path / "files" / f"f{i}.txt").write_text(f"file {i}\n")
    return write_pipeline(
        tmp_path,
        {
            "files": {
                "unit": "core.files",
                "params": {"directory": "files"},
                "outputs": {"files": "raw"},
            },
            "copy": {
                "unit": "core.identity",
                "inputs": {"input": "raw"},
                "outputs": {"output": "copied"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out/copied.jsonl", "payload": "text"},
                "inputs": {"messages": "copied"},
            },
        },
    )


def test_core_units_run_as_workers_and_status_shows_them(tmp_path):
    pipeline = core_pipeline(tmp_path)
    before = run_pipeline("status", str(pipeline), "--json")
    assert before.returncode == 0, before.stderr
    assert {w["state"] for w in json.loads(before.stdout)["workers"]} == {"not started"}
    for unit in ("files", "copy", "sink"):
        done = run_pipeline("worker", str(pipeline), unit)
        assert done.returncode == 0, done.stderr
        assert f"{unit} finished" in done.stderr
    lines = [json.loads(x) for x in (tmp_path / "out" / "copied.jsonl").read_text().splitlines()]
    assert [line["payload"] for line in lines] == ["file 0\n", "file 1\n", "file 2\n"]
    assert [line["metadata"]["name"] for line in lines] == ["f0.txt", "f1.txt", "f2.txt"]
    table = run_pipeline("status", str(pipeline))
    assert table.returncode == 0, table.stderr
    for word in ("pipeline accept", "files", "copy", "sink", "finished"):
        assert word in table.stdout
    report = json.loads(run_pipeline("status", str(pipeline), "--json").stdout)
    copy = next(w for w in report["workers"] if w["instance"] == "copy")
    assert (copy["received"], copy["processed"], copy["errors"]) == (3, 3, 0)
    assert report["error_messages"] == {}
    # run again: the source sends nothing twice and the sink writes nothing twice
    for unit in ("files", "copy", "sink"):
        assert run_pipeline("worker", str(pipeline), unit).returncode == 0
    assert len((tmp_path / "out" / "copied.jsonl").read_text().splitlines()) == 3


def test_worker_usage_errors_are_one_sentence(tmp_path):
    pipeline = core_pipeline(tmp_path)
    missing = run_pipeline("worker", str(tmp_path / "nope.pipeline.yaml"), "copy")
    assert missing.returncode == 2
    assert (
        missing.stderr.strip() == f"error: pipeline file {tmp_path / 'nope.pipeline.yaml'} "
        "does not exist"
    )
    unknown = run_pipeline("worker", str(pipeline), "coppy")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: pipeline accept has no unit coppy; did you mean copy?"
    replica = run_pipeline("worker", str(pipeline), "copy", "--replica", "1")
    assert replica.returncode == 2
    assert "has 1 replica(s)" in replica.stderr


def test_watching_source_sends_new_files_and_stops_on_sigterm(tmp_path):
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "a.dat").write_bytes(b"a")
    pipeline = write_pipeline(
        tmp_path,
        {
            "watch": {
                "unit": "core.files",
                "outputs": {"files": "raw"},
                "params": {"directory": "incoming", "watch": True, "settle_seconds": 0.2},
            }
        },
    )
    proc = subprocess.Popen(
        [PIPELINE, "worker", str(pipeline), "watch", "--status-interval", "0.2"],
        env={**os.environ, "ASAPO_PIPELINES_CACHE_DIR": CACHE_DIR},
        stderr=subprocess.PIPE,
    )
    store = tmp_path / "store"
    try:
        assert wait_until(lambda: len(read_stream(store, own("raw"))) == 1)
        (tmp_path / "incoming" / "b.dat").write_bytes(b"b")
        assert wait_until(lambda: len(read_stream(store, own("raw"))) == 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [m.metadata["name"] for m in read_stream(store, own("raw"))] == ["a.dat", "b.dat"]
    assert read_stream(store, "accept.status", "watch.0")[-1].metadata["state"] == "stopped"
    with open_transport({"embedded": {"path": str(store)}}) as t, t.consumer(own("raw"), "r") as c:
        assert not c.stream_info("default").finished  # stopped, not done: more may come later


def test_relative_params_resolve_next_to_the_original_pipeline_file(tmp_path):
    """A Nomad task runs on a copy of the file and is told where the original lives."""
    original = tmp_path / "beamline"
    original.mkdir()
    pipeline = core_pipeline(original)
    copy = tmp_path / "task" / "local" / "pipeline.yaml"
    copy.parent.mkdir(parents=True)
    text = json.loads(pipeline.read_text())
    text["transport"] = {"embedded": {"path": str(original / "store")}}
    copy.write_text(json.dumps(text))
    done = run_pipeline(
        "worker", str(copy), "files", env={"ASAPO_PIPELINES_BASE_DIR": str(original)}
    )
    assert done.returncode == 0, done.stderr
    assert len(read_stream(original / "store", own("raw"))) == 3


def test_an_invalid_pipeline_file_is_a_configuration_error_not_restarted(tmp_path):
    """A worker whose pipeline file is invalid where it runs (a deployed copy, a node's
    environment without a plugin the file uses) exited 1, so the executor restarted it until
    its restarts ran out, each start failing the same way. It now exits 78, which the
    executors take for a failure a restart cannot fix, with validate's located sentence."""
    path = core_pipeline(tmp_path)
    path.write_text(path.read_text().replace("core.identity", "core.identitty"))
    done = run_pipeline("worker", str(path), "copy", cwd=tmp_path)
    assert done.returncode == 78, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: {path} is not a valid pipeline file (1 error):" in done.stderr, done.stderr
    assert "error P201 unknown unit core.identitty; did you mean core.identity?" in done.stderr
