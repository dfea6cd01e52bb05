"""Payload bytes damaged in place (zeroed by a bad disk block, flipped) are found by the checksum
the embedded store writes with every payload: reading such a message is the same one-sentence
`CorruptPayload` as a payload file cut short, where the length check alone handed the wrong
bytes out as data. A store written before the checksums (index version 1) still reads."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from faults_support import core_pipeline, pipeline, sink_names

from asapo_pipelines.transport import CorruptPayload, open_transport
from asapo_pipelines.transport.embedded import INDEX_NAME, INDEX_VERSION, INLINE_MAX, MMAP_MIN
from asapo_pipelines.worker.naming import data_source_for

SOURCE = "raw"
SIZES = {"inline": 1024, "read": INLINE_MAX * 4, "mapped": MMAP_MIN * 2}


def _open(store: Path):
    return open_transport({"embedded": {"path": str(store)}})


def _payloads(size: int) -> list[bytes]:
    # distinct, non-zero bytes: zeroing any of them changes the payload
    return [bytes((i * 7 + n) % 255 + 1 for n in range(size)) for i in range(3)]


def _write(store: Path, payloads: list[bytes]) -> None:
    with _open(store) as t, t.producer(SOURCE) as p:
        for i, payload in enumerate(payloads, start=1):
            p.send("scan", payload, {"name": f"scan-{i}"})
        p.finish_stream("scan")


def _zero_inside(store: Path, payload: bytes) -> Path:
    """Zero 2000 bytes inside `payload` where the store keeps it (as `dd conv=notrunc` does);
    the file that held it."""
    index = store / SOURCE / INDEX_NAME
    for segment in (store / SOURCE / "payloads").rglob("*.seg"):
        data = segment.read_bytes()
        at = data.find(payload)
        if at >= 0:
            with open(segment, "r+b") as fh:
                fh.seek(at + 100)
                fh.write(b"\0" * min(2000, len(payload) - 200))
            return segment
    # small payloads live in the index row
    damaged = bytearray(payload)
    damaged[100 : len(payload) - 100] = b"\0" * (len(payload) - 200)
    with sqlite3.connect(index) as db:
        changed = db.execute(
            "UPDATE messages SET inline=? WHERE inline=?", (bytes(damaged), payload)
        ).rowcount
    assert changed == 1
    return index


def _as_before_the_checksums(store: Path) -> None:
    """Rewrite an index into the layout of version 1 (no checksums), as older releases left it."""
    with sqlite3.connect(store / SOURCE / INDEX_NAME) as db:
        db.execute("ALTER TABLE messages DROP COLUMN xxh")
        db.execute("PRAGMA user_version=1")


def _assert_damage_sentence(text: str, file: Path, mid: int) -> None:
    assert "\n" not in text
    assert f"message {mid} of stream 'scan' in data source '{SOURCE}'" in text, text
    assert str(file) in text, text
    assert "store is damaged" in text, text


@pytest.mark.parametrize("where", sorted(SIZES))
def test_zeroed_bytes_inside_a_payload_fail_every_read_of_it(tmp_path: Path, where: str):
    store = tmp_path / "store"
    payloads = _payloads(SIZES[where])
    _write(store, payloads)
    file = _zero_inside(store, payloads[1])

    with _open(store) as t, t.consumer(SOURCE, "readers", prefetch=4) as c:
        with pytest.raises(CorruptPayload) as by_id:
            c.get_by_id("scan", 2)
        _assert_damage_sentence(str(by_id.value), file, 2)

        # a group reader gets the intact ones, and the damaged one without its payload
        got: list[tuple[int, bytes] | CorruptPayload] = []
        for _ in payloads:
            try:
                msg = c.get_next("scan")
                got.append((msg.id, bytes(msg.payload)))
            except CorruptPayload as exc:
                got.append(exc)
        first, damage, last = got
        assert (first, last) == ((1, payloads[0]), (3, payloads[2]))
        assert isinstance(damage, CorruptPayload)
        _assert_damage_sentence(str(damage), file, 2)
        assert damage.damaged is not None
        assert (damage.damaged.id, damage.damaged.metadata) == (2, {"name": "scan-2"})
        assert bytes(c.get_last("scan").payload) == payloads[2]


def test_a_reprocess_of_a_run_with_zeroed_payload_bytes_fails_in_one_sentence(tmp_path: Path):
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    files.mkdir()
    for i in range(3):  # big enough to live in segment files, and to be memory-mapped
        (files / f"f{i}.txt").write_text(f"file {i} " + "A" * MMAP_MIN + "\n")
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(sink_names(out)) == 3
    written = out.read_bytes()

    source = tmp_path / "store" / data_source_for("raw", "faults", "r1")
    (segment,) = sorted((source / "payloads").rglob("*.seg"))[:1]
    with open(segment, "r+b") as fh:  # dd if=/dev/zero seek=1000 count=2000 conv=notrunc
        fh.seek(1000)
        fh.write(b"\0" * 2000)

    refused = pipeline("reprocess", str(file), "--from", "r1", cwd=tmp_path)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    err = refused.stderr.strip()
    assert "Traceback" not in err
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    assert "does not match the checksum" in err, err
    assert "the store is damaged" in err, err
    assert str(segment) in err, err

    shown = pipeline("runs", str(file), "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    recorded = {run["id"]: run for run in json.loads(shown.stdout)["runs"]}
    assert recorded["r1"]["state"] == "complete"
    assert recorded["r2"]["state"] == "failed", recorded["r2"]
    assert recorded["r2"]["message"] == "replay of r1: " + err.removeprefix("error: ")
    # nothing of the damaged payload reached the results
    assert out.read_bytes() == written


def test_a_store_written_before_the_checksums_still_reads_and_checks_new_payloads(
    tmp_path: Path,
):
    store = tmp_path / "store"
    old = _payloads(SIZES["mapped"]) + _payloads(SIZES["inline"])
    _write(store, old)
    _as_before_the_checksums(store)

    with _open(store) as t, t.producer(SOURCE) as p, t.consumer(SOURCE, "readers") as c:
        assert [bytes(c.get_by_id("scan", i).payload) for i in range(1, 7)] == old
        new = os.urandom(SIZES["mapped"])
        p.send("later", new, {})
    with sqlite3.connect(store / SOURCE / INDEX_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == INDEX_VERSION
        unchecked = db.execute("SELECT count(*) FROM messages WHERE xxh IS NULL").fetchone()[0]
    assert unchecked == len(old)

    # the old rows carry no checksum, so their damage is not seen; new ones are checked
    file = _zero_inside(store, new)
    with _open(store) as t, t.consumer(SOURCE, "readers") as c:
        with pytest.raises(CorruptPayload, match="store is damaged"):
            c.get_by_id("later", 1)
        assert bytes(c.get_by_id("scan", 1).payload) == old[0]
    assert file.suffix == ".seg"


def test_a_worker_reports_a_message_with_zeroed_payload_bytes_and_moves_on(tmp_path: Path):
    store = tmp_path / "store"
    doc = {
        "pipeline": "zeroed",
        "transport": {"embedded": {"path": "store"}},
        "streams": {SOURCE: {"external": True}},
        "units": {
            "copy": {
                "unit": "core.identity",
                "inputs": {"input": SOURCE},
                "outputs": {"output": "copied"},
            },
        },
    }
    file = tmp_path / "zeroed.pipeline.yaml"
    file.write_text(json.dumps(doc))
    payloads = _payloads(SIZES["read"])
    _write(store, payloads)
    segment = _zero_inside(store, payloads[1])

    done = pipeline("worker", str(file), "copy", "--linger", "0.2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr

    with _open(store) as t:
        with t.consumer("zeroed.errors", "test-reader") as c:
            records = [
                json.loads(bytes(c.get_by_id(info.name, i).payload))
                for info in c.streams()
                for i in range(1, info.last_id + 1)
            ]
        # the worker's run numbers its data sources: the one of stream `copied`
        (copied_source,) = [s for s in t.data_sources() if s.endswith(".copied")]
        with t.consumer(copied_source, "test-reader") as c:
            (info,) = c.streams()
            copied = [bytes(c.get_by_id(info.name, i).payload) for i in (1, 2)]
    (record,) = records
    assert record["exception"].endswith("CorruptPayload")
    assert record["message"]["metadata"] == {"name": "scan-2"}
    _assert_damage_sentence(record["error"], segment, 2)
    assert copied == [payloads[0], payloads[2]]
