"""Outputs' metadata is stored as the JSON of the whole dict, provenance included, though the
runner puts that text together from parts encoded once (`ProvenanceText`): what a reader of the
store sees is what encoding the dict gives, character for character."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.sdk.runner import UnitRunner
from asapo_pipelines.sdk.units import Message
from asapo_pipelines.transport import open_transport
from asapo_pipelines.worker.placement import this_process
from asapo_pipelines.worker.runtime import Worker

from helpers import run_to_end


def _encoded(meta: dict) -> str:
    return json.dumps(meta, separators=(",", ":"), allow_nan=False)


#: names that JSON escapes (quotes, backslashes, non-ASCII) beside plain ones
NAMES = ["default", 'scan "7"', "raw\\data", "Fe K-edge \u00e9\u2603"]
RUNS = [
    {},
    {"run": "r-1", "fingerprint": 'f\u00e9"', "session": 1733400000.25},
    # a run's provenance naming a key of the output's own takes its place, as in a dict
    {"run": "r-2", "key": "theirs"},
    # where it was computed (`placement`): a nested object in the run's part
    {"run": "r-3", "host": "n\u00e9", "job": {"executor": "slurm", "id": "7", "pid": 3}},
]


@pytest.mark.parametrize("provenance", RUNS)
@pytest.mark.parametrize("stream", NAMES)
def test_an_outputs_metadata_text_is_the_json_of_its_dict(stream: str, provenance: dict):
    runner = UnitRunner(
        Catalog.load().get("core.identity"), {}, pipeline="p\u00e9", instance='copy "1"'
    )
    runner.provenance = provenance
    runner.start()
    for meta in ({"format": "bytes", "i": 0}, {}, {"note": ["\u00b5", {"n": 1.5}]}):
        message = Message("input", "source-1", stream, 7, b"x", meta)
        (output,) = runner.handle(message).outputs
        assert output.metadata.text == _encoded(dict(output.metadata))
        assert output.metadata["provenance"]["inputs"] == [message.ref()]


def test_a_worker_stores_its_outputs_metadata_as_the_json_of_its_dict(tmp_path: Path):
    store = tmp_path / "store"
    stream = 'scan "\u00e9"'
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("s0") as p:
        for i in range(3):
            p.send(stream, b"payload", {"format": "bytes", "i": i})
        p.finish_stream(stream)
    worker = Worker(
        open_transport({"embedded": {"path": str(store)}}),
        Catalog.load().get("core.identity"),
        {},
        pipeline="p",
        instance="copy",
        inputs={"input": "s0"},
        outputs={"output": "s1"},
        run={"run": "r-9", "fingerprint": "abc", "started": 12.5},
        linger=0.0,
    )
    run_to_end(worker)  # closes its transport
    with sqlite3.connect(store / "s1" / "index.db") as db:
        texts = [row[0] for row in db.execute("SELECT meta FROM messages ORDER BY id")]
    assert len(texts) == 3
    for i, text in enumerate(texts, start=1):
        meta = json.loads(text)
        assert text == _encoded(meta)
        assert meta["provenance"] == {
            "unit": "p/copy",
            "port": "output",
            "inputs": [{"data_source": "s0", "stream": stream, "id": i}],
            "seq": 0,
            "key": f"p/copy|output|s0/{stream}/{i}|0",
            "run": "r-9",
            "fingerprint": "abc",
            "session": 12.5,
            # the host and job of this process, which computed it
            **this_process(),
        }
