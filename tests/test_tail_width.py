"""`pipeline tail` cuts its lines for a person at a terminal, not for a file or a pipe:
`pipeline tail FILE errors > errors.txt` cut every record at 100 characters, so the reasons
the run's end message sends users there to read were lost. --width still cuts anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.formats import FORMAT_KEY
from asapo_pipelines.worker.naming import data_source_for

from helpers import core_pipeline, run_pipeline

NAME = "wide"
#: a file's text longer than any terminal's default width
TEXT = "counts " + " ".join(str(i) for i in range(60))


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("wide")
    files = home / "files"
    files.mkdir()
    (files / "f0.txt").write_text("a file")
    core_pipeline(home, files=files, out=home / "out.jsonl", name=NAME)
    done = run_pipeline("run", f"{NAME}.pipeline.yaml", cwd=home, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # a JSON message with a long text in the run's `raw` stream, as a unit's record would be
    source = data_source_for("raw", NAME, "r1")
    store = {"embedded": {"path": str(home / ".pipeline-data")}}
    with open_transport(store) as transport, transport.producer(source) as producer:
        producer.send("long", json.dumps({"note": TEXT}).encode(), {FORMAT_KEY: "json"})
        producer.flush()
    return home


def test_tail_into_a_pipe_prints_whole_lines(ran):
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", cwd=ran, env={"COLUMNS": "80"})
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [x for x in done.stdout.splitlines() if "counts" in x]
    assert TEXT in line, line
    assert not line.endswith("...")


def test_tail_width_cuts_lines_anywhere(ran):
    done = run_pipeline("tail", f"{NAME}.pipeline.yaml", "raw", "--width", "60", cwd=ran)
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = [x for x in done.stdout.splitlines() if "counts" in x]
    assert len(line) == 60, line
    assert line.endswith("..."), line
