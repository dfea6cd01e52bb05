"""`pipeline tail` of a message whose payload does not decode with the format its metadata
records: damage, as a payload the store cannot read back is (docs/transports.md lists both
as CorruptPayload), so the same closing sentence and exit 1, and `damaged` in --json. It used
to print `decode_error` and exit 0, as if the stream were whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.transport import CorruptPayload, open_transport
from asapo_pipelines.transport.formats import FORMAT_KEY, decode_message
from asapo_pipelines.worker.naming import data_source_for

from helpers import core_pipeline, run_pipeline

NAME = "undecodable"
BROKEN = "broken"  # the stream (scan) the undecodable message is written to


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Path, str]:
    """Run r1 of files -> copy -> sink, then a message in its `raw` data source whose bytes
    are no JSON although its metadata says they are; the reason decoding it gives."""
    home = tmp_path_factory.mktemp("ran")
    files = home / "files"
    files.mkdir()
    for i in range(2):
        (files / f"f{i}.txt").write_text(f"file {i}")
    core_pipeline(home, files=files, out=home / "out.jsonl", name=NAME)
    done = run_pipeline("run", f"{NAME}.pipeline.yaml", cwd=home, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    source = data_source_for("raw", NAME, "r1")
    with open_transport({"embedded": {"path": str(home / ".pipeline-data")}}) as transport:
        with transport.producer(source) as producer:
            mid = producer.send(BROKEN, b"{not json", {FORMAT_KEY: "json", "name": "bad"})
            producer.flush()
        with (
            transport.consumer(source, "test") as consumer,
            pytest.raises(CorruptPayload) as caught,
        ):
            decode_message(consumer.get_by_id(BROKEN, mid))
    return home, str(caught.value)


def test_tail_json_of_an_undecodable_payload_marks_it_damaged_and_fails(ran):
    home, reason = ran
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", "--all", "--json", cwd=home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: stream raw of run r1 is damaged: 1 message cannot be read"), line
    assert reason in line
    printed = [json.loads(x) for x in done.stdout.splitlines()]
    (bad,) = [r for r in printed if r["stream"] == BROKEN]
    assert bad["damaged"] == reason, bad
    assert "decode_error" not in bad, bad
    whole = [r for r in printed if r["stream"] != BROKEN]
    assert len(whole) == 2, whole
    assert all("damaged" not in r for r in whole), whole


def test_tail_of_an_undecodable_payload_says_the_stream_is_damaged(ran):
    home, reason = ran
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", "--all", cwd=home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "stream raw of run r1 is damaged: 1 message cannot be read" in done.stderr
    assert f"<damaged: {reason}" in done.stdout
