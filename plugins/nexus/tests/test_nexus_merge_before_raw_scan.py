"""A merge written before the raw scan entries it cites (the merge and the scan source are
different units, and the writer reads its ports as their messages come: an unlikely race, and a
restarted writer that gets the raw scans redelivered after the merge) gets the checksum of each
scan file it merged once that scan's entry is written, by the same writer session or the next.
Before, such a merge recorded no checksum for the scans written after it, and a data manager
checking the archived files against the merge found them missing for good."""

from __future__ import annotations

import hashlib
import json

import h5py
from nexus_testdata import DATA, P65_SCANS, p65_scan_message, result_message

RUN = {"run": "r1", "started": 1_700_000_000.0, "pipeline_file": "/x/p65.pipeline.yaml"}
#: the scan id of each P65 scan: the key of its raw scan message, as xas.scan-files sends it
SCAN_IDS = [f"p65-xas/scans|scans|key:{name}" for name in P65_SCANS]


def _message(unit_message, body, key, port, msg_id, user_metadata=None):
    prov = {"unit": "p65-xas/up", "port": port, "inputs": [], "seq": 0, "key": key, "run": "r1"}
    prov["fingerprint"] = "f" * 16
    metadata = {**(user_metadata or {}), "provenance": prov}
    return unit_message(
        body, port=port, metadata=metadata, id=msg_id, data_source=f"p65-xas.r1.{port}"
    )


def _raw_scan(unit_message, index: int):
    """The raw scan message xas.scan-files sends: its file's size and SHA-256 in metadata."""
    raw = (DATA / P65_SCANS[index]).read_bytes()
    meta = {"path": P65_SCANS[index], "file_size": len(raw)}
    meta["file_sha256"] = hashlib.sha256(raw).hexdigest()
    body = p65_scan_message(P65_SCANS[index])
    return _message(unit_message, body, SCAN_IDS[index], "scans", index + 1, meta)


def _merge(unit_message):
    body = result_message(p65_scan_message(P65_SCANS[1]), merged=True)
    body["metadata"].pop("file")  # a merge's metadata names its group, not one file
    body["accepted"] = SCAN_IDS
    body["scans"] = [{"scan": scan, "accepted": True} for scan in SCAN_IDS]
    return _message(unit_message, body, "p65-xas/merge|merged|1", "merged", 1)


def _session(unit_harness, path, *messages) -> None:
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.runner.context.run = dict(RUN)
    harness.send(*messages)
    assert harness.result.errors == []
    harness.shutdown()


def _read_merge(path) -> tuple[list[dict], list[str], list[dict], dict[str, str]]:
    """The merge's checksums, source files and raw scans, and each raw entry by its file."""
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        merges = [e for e in f.values() if e.attrs["asapo_content_type"] == "xas/merged"]
        (merge,) = merges
        note = "provenance/source_file_checksums/data"
        checksums = json.loads(merge[note][()]) if note in merge else []
        files = json.loads(merge["provenance/source_files/data"][()])
        raw_scans = json.loads(merge["provenance/inputs/data"][()]).get("raw_scans")
        raw = {
            json.loads(e["provenance/source_files/data"][()])[0]: name
            for name, e in f.items()
            if e.attrs["asapo_content_type"] == "xas/scan"
        }
    return checksums, files, raw_scans, raw


def _expected(name: str) -> dict:
    raw = (DATA / name).read_bytes()
    return {"file": name, "path": name, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def test_a_merge_written_before_its_raw_scans_records_their_checksums_once_they_come(
    tmp_path, unit_harness, unit_message
):
    path = tmp_path / "p65.nxs"
    # the merge first, then the first raw scan in the same session; the second raw scan is
    # redelivered to the next session (the writer restarted before it was acknowledged)
    _session(unit_harness, path, _merge(unit_message), _raw_scan(unit_message, 0))
    checksums, files, raw_scans, raw = _read_merge(path)
    assert files == list(P65_SCANS)
    assert checksums == [_expected(P65_SCANS[0])]
    first_raw_scans = raw_scans

    _session(unit_harness, path, _raw_scan(unit_message, 1))
    checksums, files, raw_scans, raw = _read_merge(path)
    # in the order of the merge's source files, as if the raw scans had come first
    assert checksums == [_expected(name) for name in files]
    # the raw entries it cites (`raw_scans`), the one not written yet as none, then named
    assert [r["entry"] for r in first_raw_scans] == [raw[P65_SCANS[0]], None]
    assert [r["entry"] for r in raw_scans] == [raw[name] for name in files]
    assert [r["run"] for r in raw_scans] == ["r1", "r1"]
