"""Retention in the embedded store: streams every reader is done with are removed by policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asapo_pipelines.pipeline.model import TransportConfig
from asapo_pipelines.transport import NoData, StreamFinished, TransportConfigError, open_transport

PAYLOAD = os.urandom(64 * 1024)  # above the inline limit: payloads live in segment files


def store_with(path: Path, retention: dict | None = None):
    spec: dict = {"path": str(path)}
    if retention is not None:
        spec["retention"] = retention
    return open_transport({"embedded": spec})


def write_scans(t, names: list[str], count: int = 3, *, finish: bool = True) -> None:
    with t.producer("frames") as p:
        for i, name in enumerate(names):
            for _ in range(count):
                p.send(name, PAYLOAD, {"format": "bytes"})
            if finish:
                p.finish_stream(name, next_stream=names[i + 1] if i + 1 < len(names) else None)


def read_scan(t, group: str, name: str) -> int:
    """Take and acknowledge a whole scan as one reader; how many messages it got."""
    got = 0
    with t.consumer("frames", group) as c:
        while True:
            try:
                msg = c.get_next(name, timeout=0.0)
            except StreamFinished:
                return got
            except NoData:
                return got
            c.acknowledge(name, msg.id)
            got += 1


def names_in(t) -> list[str]:
    with t.consumer("frames", "look") as c:
        return [info.name for info in c.streams()]


def payload_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in (store / "frames" / "payloads").rglob("*.seg"))


def test_scans_every_reader_is_done_with_are_removed_past_the_count(tmp_path):
    store = tmp_path / "store"
    scans = ["s1", "s2", "s3", "s4"]
    with store_with(store, {"max_streams": 1}) as t:
        write_scans(t, scans)
        before = payload_bytes(store)
        for name in scans[:3]:
            assert read_scan(t, "normalize", name) == 3
            assert read_scan(t, "writer", name) == 3
        # done: s1..s3; one kept (the newest), s4 is not read yet
        assert names_in(t) == ["s3", "s4"]
        assert payload_bytes(store) < before
        assert read_scan(t, "normalize", "s4") == 3
        # the writer has not acknowledged s4: kept whatever the policy says
        assert names_in(t) == ["s3", "s4"]
        assert read_scan(t, "writer", "s4") == 3
        assert names_in(t) == ["s4"]


def test_unfinished_partly_acknowledged_and_holey_scans_are_kept(tmp_path):
    store = tmp_path / "store"
    with store_with(store, {"max_streams": 0}) as t:
        write_scans(t, ["open"], finish=False)
        with t.producer("frames") as p:
            p.send("holey", PAYLOAD, {"format": "bytes"}, id=2)  # id 1 is late
            p.finish_stream("holey")
        assert read_scan(t, "reader", "open") == 3
        assert read_scan(t, "reader", "holey") == 1
        write_scans(t, ["half"])
        with t.consumer("frames", "slow", lease_seconds=60) as c:
            c.get_next("half")  # taken, not acknowledged (yet): in flight
            assert read_scan(t, "reader", "half") == 3
            assert sorted(names_in(t)) == ["half", "holey", "open"]
        # the slow reader gave it back unacknowledged: still not done for it
        assert read_scan(t, "reader", "open") == 0
        assert sorted(names_in(t)) == ["half", "holey", "open"]


def test_without_a_policy_everything_is_kept(tmp_path):
    store = tmp_path / "store"
    with store_with(store) as t:
        write_scans(t, ["s1", "s2"])
        for name in ("s1", "s2"):
            assert read_scan(t, "reader", name) == 3
        assert names_in(t) == ["s1", "s2"]


def test_size_and_age_limits(tmp_path):
    with store_with(tmp_path / "a", {"max_bytes": 3 * len(PAYLOAD)}) as t:
        write_scans(t, ["s1", "s2", "s3"])
        for name in ("s1", "s2", "s3"):
            read_scan(t, "reader", name)
        assert names_in(t) == ["s3"]  # one scan's payloads fit in the limit
    with store_with(tmp_path / "b", {"max_age": 0}) as t:
        write_scans(t, ["s1", "s2"])
        read_scan(t, "reader", "s1")
        assert names_in(t) == ["s2"]


@pytest.mark.parametrize(
    ("retention", "words"),
    [
        ({"max_streams": -1}, "retention max_streams must be a number >= 0"),
        ({"keep": 3}, "unknown retention option(s): keep"),
        ("forever", "retention is given as"),
    ],
)
def test_a_bad_policy_is_one_sentence(tmp_path, retention, words):
    with pytest.raises(TransportConfigError, match=r"retention") as info:
        store_with(tmp_path / "store", retention)
    assert words in str(info.value)


def test_the_pipeline_file_section_reaches_the_store(tmp_path):
    section = TransportConfig.model_validate(
        {"embedded": {"path": str(tmp_path / "store"), "retention": {"max_streams": 2}}}
    )
    spec = section.spec()
    assert spec["embedded"]["retention"] == {"max_streams": 2}
    with open_transport(spec) as t:
        assert t.retention is not None
        assert t.retention.max_streams == 2


def test_a_bad_retention_in_a_pipeline_file_is_a_located_problem(tmp_path):
    import json as _json

    from helpers import run_pipeline

    file = tmp_path / "p.pipeline.yaml"
    file.write_text(
        _json.dumps(
            {
                "pipeline": "keep",
                "transport": {"embedded": {"path": "store", "retention": {"max_streams": -1}}},
                "units": {"files": {"unit": "core.files", "params": {"directory": "."}}},
            }
        )
    )
    result = run_pipeline("validate", str(file))
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert "max_streams" in result.stdout + result.stderr
