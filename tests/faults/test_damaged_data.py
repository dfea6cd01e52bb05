"""Items 3 and 4 of #12: a payload file gone or cut short is that message's problem (error
stream, the stream moves on); a damaged index, a read-only mount or a user without write
permission is one sentence naming the path and the remedy, from every command that meets it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from faults_support import core_pipeline, pipeline, sink_names, write_files

from asapo_pipelines.transport import open_transport
from asapo_pipelines.transport.embedded import INLINE_MAX
from asapo_pipelines.worker.naming import data_source_for

BIG = INLINE_MAX * 4  # payloads this big live in segment files, not in the index


def external_chain(tmp_path: Path) -> Path:
    """An external stream `raw` (fed by the test) -> copy -> sink."""
    doc = {
        "pipeline": "damaged",
        "transport": {"embedded": {"path": "store"}},
        "streams": {"raw": {"external": True}},
        "units": {
            "copy": {
                "unit": "core.identity",
                "inputs": {"input": "raw"},
                "outputs": {"output": "copied"},
            },
            "sink": {
                "unit": "core.jsonl-sink",
                "params": {"path": "out.jsonl"},
                "inputs": {"messages": "copied"},
            },
        },
    }
    path = tmp_path / "damaged.pipeline.yaml"
    path.write_text(json.dumps(doc))
    return path


def feed(store: Path, stream: str, payloads: list[bytes]) -> None:
    with open_transport({"embedded": {"path": str(store)}}) as t, t.producer("raw") as p:
        for i, payload in enumerate(payloads, start=1):
            p.send(stream, payload, {"name": f"{stream}-{i}"})
        p.finish_stream(stream)


def segment_files(store: Path) -> list[Path]:
    return sorted((store / "raw" / "payloads").rglob("*.seg"))


def error_records(store: Path, pipeline_name: str) -> list[dict]:
    with (
        open_transport({"embedded": {"path": str(store)}}) as t,
        t.consumer(f"{pipeline_name}.errors", "test-reader") as c,
    ):
        out = []
        for info in c.streams():
            for i in range(1, info.last_id + 1):
                out.append(json.loads(bytes(c.get_by_id(info.name, i).payload)))
        return out


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_payload_goes_to_the_error_stream_and_the_stream_moves_on(
    tmp_path: Path, damage: str
) -> None:
    file = external_chain(tmp_path)
    store = tmp_path / "store"
    # one scan whose payload file is damaged after writing, one intact scan after it
    feed(store, "scan1", [b"a" * BIG, b"b" * BIG, b"c" * 10])
    [segment] = segment_files(store)
    if damage == "truncated":
        os.truncate(segment, BIG + BIG // 2)  # the second payload is cut short
    else:
        segment.unlink()  # both big payloads are gone
    feed(store, "scan2", [b"d" * 10, b"e" * BIG])

    for unit in ("copy", "sink"):
        done = pipeline("worker", str(file), unit, "--linger", "0.2", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr

    damaged = {"truncated": ["scan1-2"], "missing": ["scan1-1", "scan1-2"]}[damage]
    records = error_records(store, "damaged")
    assert sorted(r["message"]["metadata"]["name"] for r in records) == damaged
    for record in records:
        assert record["unit"] == "damaged/copy"
        assert record["exception"].endswith("CorruptPayload")
        reason = "holds" if damage == "truncated" else "no payload file any more"
        assert reason in record["error"]
        assert "stream 'scan1'" in record["error"]
    delivered = sorted(
        json.loads(line)["metadata"]["name"]
        for line in (tmp_path / "out.jsonl").read_text().splitlines()
    )
    expected = {"truncated": ["scan1-1", "scan1-3"], "missing": ["scan1-3"]}[damage]
    assert delivered == sorted([*expected, "scan2-1", "scan2-2"])

    # a second run meets nothing again: everything was acknowledged, nothing reported twice
    again = pipeline("worker", str(file), "copy", "--linger", "0.2", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(error_records(store, "damaged")) == len(damaged)


def damage_index(index: Path) -> None:
    """Overwrite the index's pages after the first with garbage, as a bad disk block would."""
    with sqlite3.connect(index) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = index.stat().st_size
    assert size > 8192
    with open(index, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(size - 4096))


def run_once(tmp_path: Path) -> tuple[Path, Path]:
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 20)
    file = core_pipeline(tmp_path, files=files, out=out, store="store")
    done = pipeline("run", str(file), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(sink_names(out)) == 20
    return file, tmp_path / "store"


def one_sentence(done: object, *needles: str) -> str:
    err = done.stderr.strip()  # type: ignore[attr-defined]
    assert done.returncode not in (0, 70), err  # type: ignore[attr-defined]
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert err.startswith("error: "), err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_a_damaged_index_is_one_sentence_naming_the_file_and_the_remedy(tmp_path: Path) -> None:
    file, store = run_once(tmp_path)
    index = store / data_source_for("raw", "faults", "r1") / "index.db"  # in its namespace
    damage_index(index)
    for args in (("streams", str(file)), ("worker", str(file), "copy")):
        done = pipeline(*args, cwd=tmp_path)
        one_sentence(done, str(index), "restore it from a backup, or move it aside")
    # a configuration error (78), which no executor restarts: a restart meets the same damage
    assert done.returncode == 78, done.stderr


def test_a_read_only_data_directory_is_one_sentence(tmp_path: Path, tmpfs) -> None:
    fs = tmpfs("8m")
    files, out = tmp_path / "files", tmp_path / "out.jsonl"
    write_files(files, 0, 5)
    file = core_pipeline(tmp_path, files=files, out=out, store=str(fs.path / "store"))
    assert pipeline("run", str(file), "--data-dir", str(fs.path), cwd=tmp_path).returncode == 0
    fs.read_only()
    try:
        for args in (
            ("run", str(file), "--data-dir", str(fs.path)),
            ("run", str(file), "--detach", "--data-dir", str(fs.path)),
            ("worker", str(file), "copy"),
        ):
            done = pipeline(*args, cwd=tmp_path)
            one_sentence(done, str(fs.path), "read-only", "make it writable")
        # what only reads the store still reads it: an archived store can be looked at
        looked = pipeline("streams", str(file), cwd=tmp_path)
        assert looked.returncode == 0, looked.stderr
        assert "Traceback" not in looked.stderr
    finally:
        fs.writable()


def test_a_user_without_write_permission_gets_one_sentence(as_nobody) -> None:
    # a folder of its own under /tmp: pytest keeps its own temporary folders private (0700)
    work = Path(tempfile.mkdtemp(prefix="faults-nobody-", dir="/tmp"))
    try:
        os.chmod(work, 0o755)
        files, out = work / "files", work / "out.jsonl"
        write_files(files, 0, 5)
        file = core_pipeline(work, files=files, out=out, store="store")
        assert pipeline("run", str(file), cwd=work).returncode == 0
        # the user can read the pipeline file and the files, but write nothing of the run's
        for args in (
            ("run", str(file)),
            ("run", str(file), "--detach"),
            ("worker", str(file), "copy"),
        ):
            done = pipeline(*args, cwd=work, prefix=as_nobody)
            one_sentence(done, str(work), "may not write to", "give it write permission")
        # a colleague who may only read the store can still look at it
        looked = pipeline("streams", str(file), cwd=work, prefix=as_nobody)
        assert looked.returncode == 0, looked.stderr
        assert "Traceback" not in looked.stderr
        # nor may it enter the folder of the pipeline file
        os.chmod(work, 0o700)
        for args in (("run", str(file)), ("worker", str(file), "copy")):
            done = pipeline(*args, cwd="/", prefix=as_nobody)
            one_sentence(done, str(file), "Permission denied", "may not read or enter it")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def damage_layout(source: Path, how: str) -> Path:
    """Give a path of a data source's own layout the wrong type, as a careless cleanup or a
    bad restore does; returns the path the sentence names."""
    if how == "index is a directory":
        index = source / "index.db"
        for path in source.glob("index.db*"):
            path.unlink()
        index.mkdir()
        return index
    payloads = source / "payloads"
    shutil.rmtree(payloads)
    payloads.write_text("not a directory\n")
    return payloads


@pytest.mark.parametrize("how", ["index is a directory", "payloads is a file"])
def test_a_store_path_of_the_wrong_type_is_damage_not_restarted(tmp_path: Path, how: str) -> None:
    """A data source whose index is a directory, or whose payloads directory is a file, is
    damaged: a restart meets it again. Before, the worker exited 1 (restarted, five times over a
    minute) with "check the storage (free space, permissions...)" or, for the index, "this user
    may not write to it" said to root; now it exits 78 with the damaged remedy, and a run fails
    the unit at once."""
    file, store = run_once(tmp_path)
    named = damage_layout(store / data_source_for("raw", "faults", "r1"), how)
    done = pipeline("worker", str(file), "copy", cwd=tmp_path)
    one_sentence(done, str(named), "is damaged; restore it from a backup, or move it aside")
    assert done.returncode == 78, done.stderr

    ran = pipeline("run", str(file), "--json", cwd=tmp_path)  # resumes r1
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    state = json.loads(ran.stdout)
    # the first unit to meet it (files writes raw, copy reads it) fails for good at once
    failed = [u for u in state["units"] if u["state"] == "failed"]
    assert failed, state["units"]
    assert all(u["exit_codes"] == [78] for u in failed), state["units"]
    assert all(u["restarts"] == 0 for u in state["units"]), state["units"]
    assert f"{named} is damaged" in state["message"], state["message"]
