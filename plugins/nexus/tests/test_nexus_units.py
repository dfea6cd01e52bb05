"""`nexus.writer` as a unit: in the SDK's harness, and as a `pipeline worker` process whose file
readers open while it still writes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from nexus_procs import Feeder, last_status, spawn, stop, wait_until
from nexus_testdata import P65_SCANS, p65_scan_message, result_message
from test_nexus_writer import NXXAS_FIELDS

from asapo_pipelines_nexus.writer import CONTENT_ATTR, KEY_ATTR


def with_key(unit_message, body, key, port, *, msg_id=None, delivery_count=1):
    meta = {"provenance": {"unit": "p65/up", "port": port, "inputs": [], "seq": 0, "key": key}}
    return unit_message(body, port=port, metadata=meta, id=msg_id, delivery_count=delivery_count)


def entries_by_key(path) -> tuple[h5py.File, dict[str, h5py.Group]]:
    f = h5py.File(path, "r", swmr=True)
    return f, {str(g.attrs[KEY_ATTR]): g for g in f.values() if KEY_ATTR in g.attrs}


def check_scan_entry(entry: h5py.Group, body: dict) -> None:
    assert entry.attrs[CONTENT_ATTR] == "xas/scan"
    for path, nx_class in NXXAS_FIELDS.items():
        assert path in entry, path
        if nx_class is not None:
            assert entry[path].attrs["NX_class"] == nx_class, path
    assert entry["definition"][()].decode() == "NXxas"
    np.testing.assert_array_equal(entry["instrument/monochromator/energy"][()], body["energy"])
    channels = body["channels"]
    np.testing.assert_array_equal(entry["instrument/incoming_beam/data"][()], channels["i0"])
    np.testing.assert_array_equal(entry["instrument/absorbed_beam/data"][()], channels["it"])
    np.testing.assert_array_equal(entry["instrument/reference_beam/data"][()], channels["iref"])
    np.testing.assert_array_equal(entry["data/absorbed_beam"][()], channels["it"])
    assert entry["sample/name"][()].decode() == body["metadata"]["sample"]


@pytest.fixture(scope="module")
def scans() -> list[dict]:
    return [p65_scan_message(name) for name in P65_SCANS]


def test_writer_unit_stores_each_message_once_by_its_port(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "out" / "p65.nxs"
    spectrum, merged = result_message(scans[0]), result_message(scans[1], merged=True)
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.send(
        with_key(unit_message, scans[0], "raw/scan-0", "scans"),
        with_key(unit_message, scans[1], "raw/scan-1", "scans"),
        with_key(unit_message, spectrum, "norm/scan-0", "spectra"),
        with_key(unit_message, merged, "merge/1", "merged"),
        # redelivered after a crash (same message), and sent again by a restarted upstream
        with_key(unit_message, scans[0], "raw/scan-0", "scans", msg_id=1, delivery_count=2),
        with_key(unit_message, scans[1], "raw/scan-1", "scans", msg_id=7),
    )
    assert harness.result.errors == []
    assert len(harness.result.acknowledged) == 6
    result = harness.shutdown()
    assert result.summary["entries_written"] == 4
    assert result.summary["duplicates_skipped"] == 2
    assert (result.summary["scans_written"], result.summary["merged_written"]) == (2, 1)
    assert result.summary["file"] == str(path.resolve())
    f, entries = entries_by_key(path)
    with f:
        assert sorted(entries) == ["merge/1", "norm/scan-0", "raw/scan-0", "raw/scan-1"]
        check_scan_entry(entries["raw/scan-0"], scans[0])
        check_scan_entry(entries["raw/scan-1"], scans[1])
        assert entries["norm/scan-0"].attrs[CONTENT_ATTR] == "xas/spectrum"
        np.testing.assert_allclose(entries["norm/scan-0"]["data/mu"][()], spectrum["arrays"]["mu"])
        merge = entries["merge/1"]
        assert merge.attrs[CONTENT_ATTR] == "xas/merged"
        assert merge["process/results/n_merged"][()] == 2
        np.testing.assert_allclose(merge["data/mu_errors"][()], merged["arrays"]["mu_stderr"])


def test_a_message_that_is_not_a_scan_is_an_error_record(tmp_path, run_unit, unit_message):
    result = run_unit(
        "nexus.writer",
        [unit_message({"energy": [1, 2, 3]}, port="scans"), unit_message([1, 2], port="spectra")],
        params={"file": str(tmp_path / "p65.nxs")},
    )
    assert len(result.errors) == 2
    assert "NXxas needs I0" in result.errors[0]["error"]
    assert "is not a JSON object" in result.errors[1]["error"]
    assert result.summary["entries_written"] == 0
    with h5py.File(tmp_path / "p65.nxs", "r") as f:
        assert list(f) == []


def test_file_opens_with_h5py_while_the_writer_worker_still_writes(tmp_path, scans):
    pipeline = tmp_path / "writer.pipeline.yaml"
    pipeline.write_text(
        json.dumps(
            {
                "pipeline": "p65-nexus",
                "transport": {"embedded": {"path": "store"}},
                "streams": {
                    "raw-scans": {"external": True},
                    "spectra": {"external": True},
                    "merged": {"external": True},
                },
                "units": {
                    "writer": {
                        "unit": "nexus.writer",
                        "params": {"file": "results/p65.nxs"},
                        "inputs": {"scans": "raw-scans", "spectra": "spectra", "merged": "merged"},
                    }
                },
            }
        )
    )
    store, path = tmp_path / "store", tmp_path / "results" / "p65.nxs"
    feeder = Feeder(store)
    writer = spawn(pipeline, "writer", tmp_path / "writer.log")
    try:
        seen: list[list[str]] = []
        for i, body in enumerate(scans):
            feeder.send("raw-scans", body, f"p65/scans|scans|key:{P65_SCANS[i]}")

            def has(n=i + 1, i=i, body=body):
                if not path.exists():
                    return False
                try:
                    f, entries = entries_by_key(path)
                except OSError:  # the writer is between creating and switching to SWMR
                    return False
                with f:
                    keys = sorted(entries)
                    if len(keys) < n:
                        return False
                    # read back while the writer holds the file
                    check_scan_entry(entries[f"p65/scans|scans|key:{P65_SCANS[i]}"], body)
                seen.append(keys)
                return True

            assert wait_until(has, proc=writer), (tmp_path / "writer.log").read_text()
            assert writer.poll() is None  # still running: the file was read while it grows
        # the first scan again, as a restarted upstream would send it, then the results
        feeder.send("raw-scans", scans[0], f"p65/scans|scans|key:{P65_SCANS[0]}")
        feeder.send("spectra", result_message(scans[0]), "p65/normalize|spectra|0")
        feeder.send("merged", result_message(scans[1], merged=True), "p65/merge|merged|0")
        feeder.finish("raw-scans", "spectra", "merged")
        assert writer.wait(120) == 0, (tmp_path / "writer.log").read_text()
    finally:
        stop(writer)
        feeder.close()
    assert [len(k) for k in seen] == [1, 2]
    f, entries = entries_by_key(path)
    with f:
        kinds = sorted(str(g.attrs[CONTENT_ATTR]) for g in entries.values())
        assert kinds == ["xas/merged", "xas/scan", "xas/scan", "xas/spectrum"]
        for i, body in enumerate(scans):
            check_scan_entry(entries[f"p65/scans|scans|key:{P65_SCANS[i]}"], body)
    status = last_status(store, "p65-nexus", "writer")
    assert status["state"] == "finished"
    assert status["summary"]["entries_written"] == 4
    assert status["summary"]["duplicates_skipped"] == 1
    assert status["summary"]["file"] == str(path.resolve())


def test_a_merge_of_no_scan_is_an_entry_without_data_counted_once(
    tmp_path, unit_harness, unit_message, scans
):
    # every scan of the group rejected, or two that disagree with no majority: the merge
    # carries its reasons but no arrays. It was an error record of the writer ("it has no
    # energy and mu arrays to store"), then no entry at all, which left the group's earlier
    # merge as the file's newest; now an entry that says nothing was merged, stored once
    path = tmp_path / "p65.nxs"
    merged = result_message(scans[1], merged=True)
    empty = {
        **merged,
        "n_merged": 0,
        "n_scans": 2,
        "accepted": [],
        "rejected": [{"scan": s, "reasons": ["no majority: ..."]} for s in merged["accepted"]],
        "arrays": {},
        "values": {},
        "settings": {},
    }
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.send(
        with_key(unit_message, merged, "merge/1", "merged", msg_id=1),
        with_key(unit_message, empty, "merge/2", "merged", msg_id=2),
        # redelivered after a crash: stored once, counted once
        with_key(unit_message, empty, "merge/2", "merged", msg_id=2, delivery_count=2),
    )
    assert harness.result.errors == []
    assert len(harness.result.acknowledged) == 3
    result = harness.shutdown()
    assert result.summary["merges_without_data"] == 1
    assert result.summary["merged_written"] == 2
    assert result.summary["duplicates_skipped"] == 1
    assert result.summary["entries_in_file"] == 2
    f, entries = entries_by_key(path)
    with f:
        assert sorted(entries) == ["merge/1", "merge/2"]
        nothing = entries["merge/2"]
        assert nothing.attrs[CONTENT_ATTR] == "xas/merged"
        assert "data" not in nothing
        assert "default" not in nothing.attrs
        assert nothing["process/results/n_merged"][()] == 0
        assert "nothing merged" in nothing["title"][()].decode()
        assert f.attrs["default"] == nothing.name.lstrip("/")
