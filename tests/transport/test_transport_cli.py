"""`pipeline streams` and `pipeline prune` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from asapo_pipelines.transport.embedded import EmbeddedTransport


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from asapo_pipelines.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / ".pipeline-data"
    transport = EmbeddedTransport(path)
    with transport.producer("detector") as producer:
        for _ in range(5):
            producer.send("scan-1", os.urandom(50_000), None)
        producer.finish_stream("scan-1", next_stream="scan-2")
        producer.send("scan-2", b"abc", None)
    with transport.consumer("detector", "viewer") as consumer:
        consumer.acknowledge("scan-1", consumer.get_next("scan-1").id)
    return path


def test_streams_json_lists_counts_sizes_and_lag(store: Path) -> None:
    proc = run("streams", str(store), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    (source,) = data["data_sources"]
    assert source["name"] == "detector"
    scan1, scan2 = source["streams"]
    assert (scan1["name"], scan1["message_count"], scan1["size_bytes"]) == ("scan-1", 5, 250_000)
    assert (scan1["finished"], scan1["next_stream"], scan1["last_id"]) == (True, "scan-2", 5)
    assert scan1["group_lag"] == {"viewer": 4}
    assert (scan2["name"], scan2["message_count"], scan2["finished"]) == ("scan-2", 1, False)


def test_streams_table_and_pipeline_file(store: Path) -> None:
    pipeline = store.parent / "demo.pipeline.yaml"
    pipeline.write_text(
        "pipeline: demo\ntransport: {embedded: {path: .pipeline-data}}\nunits: {}\n"
    )
    # the file's own pipeline has no data sources: said, with the others the store holds
    proc = run("streams", str(pipeline))
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())
    assert "(pipeline demo): no data sources yet" in said
    assert "the store holds other data sources too (detector)" in said
    assert "--all` lists them" in said
    proc = run("streams", str(pipeline), "--all")
    assert proc.returncode == 0, proc.stderr
    for text in ("detector", "scan-1", "scan-2", "244.1 KiB", "finished -> scan-2", "viewer: 4"):
        assert text in proc.stdout
    # default store next to a pipeline file without a transport section
    bare = store.parent / "bare.pipeline.yaml"
    bare.write_text("pipeline: bare\nunits: {}\n")
    assert run("streams", str(bare), "--json").returncode == 0


def test_streams_errors_are_one_sentence(tmp_path: Path) -> None:
    proc = run("streams", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run("streams", str(tmp_path))
    assert proc.returncode == 2
    assert "no embedded transport store" in proc.stderr
    (tmp_path / "p.pipeline.yaml").write_text(
        "pipeline: p\ntransport: {embedded: {path: nowhere}}\n"
    )
    proc = run("streams", str(tmp_path / "p.pipeline.yaml"))
    assert proc.returncode == 2
    assert "does not exist yet" in proc.stderr


def test_prune_drops_old_streams(store: Path) -> None:
    proc = run("prune", str(store), "--older-than", "bad")
    assert proc.returncode == 2
    assert "cannot read the age" in proc.stderr
    # a number alone is no age: 3 seconds, minutes or days? Nothing is dropped
    proc = run("prune", str(store), "--older-than", "3")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == (
        "error: the age '3' has no unit; write 3s, 3m (minutes), 3h, 3d or 3w\n"
    ), proc.stderr
    proc = run("prune", str(store), "--older-than", "1d", "--json")
    assert json.loads(proc.stdout)["dropped_streams"] == []
    proc = run("prune", str(store), "--older-than", "0s", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert sorted(map(tuple, report["dropped_streams"])) == [
        ("detector", "scan-1"),
        ("detector", "scan-2"),
    ]
    assert report["freed_bytes"] >= 250_000
    listing = json.loads(run("streams", str(store), "--json").stdout)
    assert listing["data_sources"][0]["streams"] == []


def test_streams_of_an_unreachable_asapo_is_one_sentence(tmp_path: Path) -> None:
    pytest.importorskip("asapo_consumer", reason="the asapo extra is not installed")
    pipeline = tmp_path / "facility.pipeline.yaml"
    pipeline.write_text(
        "pipeline: facility\n"
        "transport: {asapo: {endpoint: '127.0.0.1:9', beamtime: b1, token_env: CLI_TOKEN,"
        " request_timeout: 1}}\n"
    )
    proc = run("streams", str(pipeline))
    assert proc.returncode == 1
    assert "no ASAP::O token: set the environment variable CLI_TOKEN" in proc.stderr
    os.environ["CLI_TOKEN"] = "CLI-SECRET"
    try:
        proc = run("streams", str(pipeline))
    finally:
        del os.environ["CLI_TOKEN"]
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "ASAP::O at 127.0.0.1:9 is unavailable" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "CLI-SECRET" not in proc.stdout + proc.stderr


def test_streams_of_a_source_are_listed_default_first_then_by_name(tmp_path: Path) -> None:
    """Before, a data source's streams were listed in the order they were made: the status
    streams of units started together came in another order from one run to the next, and
    `default` among the others wherever it happened to be made."""
    path = tmp_path / ".pipeline-data"
    made = ["sink.0", "r10", "default", "files.0", "r2"]
    with EmbeddedTransport(path).producer("mixed") as producer:
        for name in made:
            producer.send(name, b"x", None)
    # what the user reads: numbers in their order, not as text (r2 before r10)
    expected = ["default", "files.0", "r2", "r10", "sink.0"]
    proc = run("streams", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    (source,) = json.loads(proc.stdout)["data_sources"]
    assert [s["name"] for s in source["streams"]] == expected
    proc = run("streams", str(path))
    assert proc.returncode == 0, proc.stderr
    shown = [w.rstrip(":") for w in proc.stdout.split() if w.rstrip(":") in made]
    assert shown == expected, proc.stdout
