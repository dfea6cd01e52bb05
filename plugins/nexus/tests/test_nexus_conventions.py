"""NeXus conventions a viewer or a reader relies on, with the writer alone (no XAS plugin): the
root's `default` follows the newest merge (else spectrum, else entry), also across a restart;
a scan's time keeps the zone its file states and says when it states none; a merge records the
energy shift of each merged scan; titles name the run, and a merge which merge of its group it
is."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from nexus_testdata import P65_SCANS, p65_scan_message, result_message

RUN_1 = {"run": "r1", "started": 1_700_000_000.0, "pipeline_file": "/x/p65.pipeline.yaml"}
RUN_2 = {"run": "r2", "started": 1_700_086_400.0, "pipeline_file": "/x/p65.pipeline.yaml"}


@pytest.fixture(scope="module")
def scans() -> list[dict]:
    return [p65_scan_message(name) for name in P65_SCANS]


def message(unit_message, body, key, port, run):
    prov = {"unit": "p65/up", "port": port, "inputs": [], "seq": 0, "key": key}
    prov.update(run=run["run"], fingerprint="f" * 16)
    return unit_message(body, port=port, metadata={"provenance": prov})


def write(unit_harness, path, run, *sent):
    """One writer's life: opens the file, writes `sent`, closes it (a restart writes again)."""
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.runner.context.run = dict(run)
    harness.send(*sent)
    assert harness.result.errors == []
    return harness.shutdown().summary


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _default(path) -> tuple[str, str]:
    with h5py.File(path, "r", locking=False) as f:
        name = _text(f.attrs["default"])
        return name, _text(f[name].attrs["asapo_content_type"])


def merge_body(scan, shifts: list[float | None]) -> dict:
    body = result_message(scan, merged=True)
    body.pop("metadata")  # a merge's body has its group, no scan metadata
    body["scans"] = [
        {"scan": name, "accepted": True, "shift": shift, "shift_err": None if shift else 0.0}
        for name, shift in zip(P65_SCANS, shifts, strict=True)
    ]
    return body


def test_the_root_names_the_newest_merge_else_spectrum_else_entry(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    send = lambda body, key, port: message(unit_message, body, key, port, RUN_1)  # noqa: E731
    write(unit_harness, path, RUN_1, send(scans[0], "raw/0", "scans"))
    assert _default(path) == ("entry1", "xas/scan")
    write(unit_harness, path, RUN_1, send(result_message(scans[0]), "norm/0", "spectra"))
    assert _default(path) == ("entry2", "xas/spectrum")
    write(unit_harness, path, RUN_1, send(merge_body(scans[0], [0.0, 0.1]), "merge/0", "merged"))
    assert _default(path) == ("entry3", "xas/merged")
    # a later spectrum or scan does not take the place of the merge
    write(
        unit_harness,
        path,
        RUN_1,
        send(result_message(scans[1]), "norm/1", "spectra"),
        send(scans[1], "raw/1", "scans"),
    )
    assert _default(path) == ("entry3", "xas/merged")
    write(unit_harness, path, RUN_2, send(merge_body(scans[1], [0.0, 0.2]), "merge/1", "merged"))
    assert _default(path) == ("entry6", "xas/merged")

    # a file whose root names no default nor its time (an older writer's): a restarted writer
    # names the entry, and dates the file by its oldest entry, not by the restart
    with h5py.File(path, "a") as f:
        del f.attrs["default"], f.attrs["file_time"]
    write(unit_harness, path, RUN_2)
    assert _default(path) == ("entry6", "xas/merged")
    with h5py.File(path, "r", locking=False) as f:
        for attr in ("NX_class", "file_name", "HDF5_Version", "h5py_version", "creator"):
            assert attr in f.attrs
        assert _text(f.attrs["file_time"]) == _text(f["entry1/provenance/date"][()])


def test_a_scan_time_keeps_the_zone_its_file_states_and_says_when_there_is_none(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    zoned = {**scans[1], "metadata": {**scans[1]["metadata"]}}
    zoned["metadata"]["start_time"] = "2020-11-22T01:52:59+01:00"
    write(
        unit_harness,
        path,
        RUN_1,
        message(unit_message, scans[0], "raw/0", "scans", RUN_1),
        message(unit_message, zoned, "raw/1", "scans", RUN_1),
    )
    with h5py.File(path, "r", locking=False) as f:
        plain, stated = f["entry1/start_time"], f["entry2/start_time"]
        assert _text(plain[()]) == scans[0]["metadata"]["start_time"]  # as written, no zone
        assert _text(plain.attrs["time_zone"]) == "unknown"
        assert _text(stated[()]) == "2020-11-22T01:52:59+01:00"
        assert "time_zone" not in stated.attrs


def test_a_merge_records_each_merged_scans_shift_in_the_order_it_names_them(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    with_shifts = merge_body(scans[1], [0.0, 0.026])
    older = result_message(scans[1], merged=True)  # a merge message from before the shifts
    older.pop("metadata")
    write(
        unit_harness,
        path,
        RUN_1,
        message(unit_message, with_shifts, "merge/0", "merged", RUN_1),
        message(unit_message, older, "merge/1", "merged", RUN_1),
    )
    with h5py.File(path, "r", locking=False) as f:
        results = f["entry1/process/results"]
        merged = json.loads(_text(f["entry1/provenance/inputs/data"][()]))["merged"]
        assert [m["scan"] for m in merged] == list(P65_SCANS)
        np.testing.assert_array_equal(results["alignment_shift"][()], [0.0, 0.026])
        assert _text(results["alignment_shift"].attrs["units"]) == "eV"
        errors = results["alignment_shift_errors"][()]
        assert errors[0] == 0.0
        assert np.isnan(errors[1])  # the message gave no error for it
        assert "alignment_shift" not in f["entry2/process/results"]


def test_merge_titles_name_the_run_and_which_merge_of_the_group_they_are(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    body = merge_body(scans[1], [0.0, 0.026])  # two merges of two scans (a redelivered scan)
    first = [message(unit_message, body, f"merge/{i}", "merged", RUN_1) for i in (1, 2)]
    write(unit_harness, path, RUN_1, *first)
    # the writer restarted: the stream's third message is merge 3; another run counts from 1
    restarted = message(unit_message, body, "merge/3", "merged", RUN_1)
    restarted.id = 3  # a fresh harness numbers from 1; the stream goes on at 3
    write(unit_harness, path, RUN_1, restarted)
    write(unit_harness, path, RUN_2, message(unit_message, body, "merge/1", "merged", RUN_2))
    with h5py.File(path, "r", locking=False) as f:
        titles = [_text(f[f"entry{i}/title"][()]) for i in range(1, 5)]
    group = "20K_GOE_Fe_K_240, Fe, K"
    pipeline = first[0].metadata["provenance"]["unit"].partition("/")[0]  # leads every title
    assert titles == [
        f"{pipeline} r1: merge 1 of {group} (2 scans)",
        f"{pipeline} r1: merge 2 of {group} (2 scans)",
        f"{pipeline} r1: merge 3 of {group} (2 scans)",
        f"{pipeline} r2: merge 1 of {group} (2 scans)",
    ]
