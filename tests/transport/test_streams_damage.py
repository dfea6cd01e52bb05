"""`pipeline streams` shows a stream whose payload files are gone or cut short: `pipeline
tail` stops on such a stream and sends the reader there, which listed it as healthy. Known
from the payload files' sizes, no payload read. A real embedded store, real files removed
and cut, the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asapo_pipelines.transport.embedded import INLINE_MAX, EmbeddedTransport

#: payloads kept in segment files (not in the index row), 4 per stream
SIZE = INLINE_MAX * 9


def streams(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from asapo_pipelines.cli import main; main()", "streams", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def test_streams_says_which_streams_hold_messages_that_cannot_be_read(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with EmbeddedTransport(store).producer("detector") as producer:
        for stream in ("gone", "cut", "whole"):
            for i in range(4):
                producer.send(stream, os.urandom(SIZE), {"name": f"{stream}-{i}"})
        producer.flush()
    segments = {p.parent.name: p for p in (store / "detector" / "payloads").rglob("*.seg")}
    assert len(segments) == 3
    gone, cut = segments["1"], segments["2"]  # streams get ids in the order first written
    gone.unlink()
    with open(cut, "r+b") as fh:  # the last message and a half gone
        fh.truncate(int(SIZE * 2.5))

    listed = streams(str(store), "--json")
    assert listed.returncode == 0, listed.stderr
    (source,) = json.loads(listed.stdout)["data_sources"]
    damaged = {s["name"]: s["damaged"] for s in source["streams"]}
    assert damaged == {"gone": 4, "cut": 2, "whole": 0}

    shown = streams(str(store))
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    text = " ".join(shown.stdout.split())
    assert "open, 4 damaged" in text, text
    assert "open, 2 damaged" in text, text
    for stream, n in (("gone", 4), ("cut", 2)):
        assert (
            f"stream {stream} of data source detector is damaged: {n} of its messages cannot "
            "be read (the payload file is gone or shorter than recorded)"
        ) in text, text
    assert "stream whole of data source detector is damaged" not in text
