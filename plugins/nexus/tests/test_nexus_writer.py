"""The NeXus writer on real P65 scans: NXxas fields, arrays, SWMR readers, no duplicates, crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from nexus_testdata import P65_SCANS, p65_scan_message, result_message, xdi_mu_message

from asapo_pipelines.errors import PipelinesError
from asapo_pipelines_nexus.errors import NexusWriterError
from asapo_pipelines_nexus.writer import KEY_ATTR, NexusWriter, is_decision

NXXAS_FIELDS = {
    # path inside the entry -> NX_class of the group, or None for a field
    "title": None,
    "start_time": None,
    "definition": None,
    "instrument": "NXinstrument",
    "instrument/source": "NXsource",
    "instrument/source/type": None,
    "instrument/source/name": None,
    "instrument/source/probe": None,
    "instrument/monochromator": "NXmonochromator",
    "instrument/monochromator/energy": None,
    "instrument/incoming_beam": "NXdetector",
    "instrument/incoming_beam/data": None,
    "instrument/absorbed_beam": "NXdetector",
    "instrument/absorbed_beam/data": None,
    "sample": "NXsample",
    "sample/name": None,
    "monitor": "NXmonitor",
    "monitor/mode": None,
    "monitor/preset": None,
    "monitor/data": None,
    "data": "NXdata",
    "data/energy": None,
    "data/absorbed_beam": None,
}

#: A reader in its own process: opens the file in SWMR mode and dumps what it finds.
READER = textwrap.dedent(
    """
    import json, sys, h5py, numpy as np
    out = {}
    with h5py.File(sys.argv[1], "r", swmr=True) as f:
        for name, entry in f.items():
            item = {"key": entry.attrs["asapo_key"], "type": entry.attrs["asapo_content_type"]}
            if "instrument" in entry:
                item["energy_sum"] = float(np.sum(entry["instrument/monochromator/energy"][()]))
                item["it_sum"] = float(np.sum(entry["instrument/absorbed_beam/data"][()]))
            out[name] = item
    print(json.dumps(out))
    """
)


def read_in_other_process(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def scans() -> list[dict]:
    return [p65_scan_message(name) for name in P65_SCANS]


def test_nxxas_required_fields_and_arrays(tmp_path, scans):
    path = tmp_path / "p65.nxs"
    with NexusWriter(path) as writer:
        names = [
            writer.write("xas/scan", scan, f"raw-scans/{i + 1}") for i, scan in enumerate(scans)
        ]
    assert names == ["entry1", "entry2"]
    with h5py.File(path, "r") as f:
        assert f.attrs["NX_class"] == "NXroot"
        for name, scan in zip(names, scans, strict=True):
            entry = f[name]
            assert entry.attrs["NX_class"] == "NXentry"
            for field, nx_class in NXXAS_FIELDS.items():
                assert field in entry, f"{name}/{field} missing"
                if nx_class:
                    assert entry[field].attrs["NX_class"] == nx_class, field
            assert entry["definition"].asstr()[()] == "NXxas"
            assert entry["instrument/source/probe"].asstr()[()] == "x-ray"
            assert entry["start_time"].asstr()[()] == "2020-11-22T01:47:54"
            assert entry["sample/name"].asstr()[()] == "20K_GOE_Fe_K_240"
            assert entry["monitor/mode"].asstr()[()] == "timer"
            assert entry["monitor/preset"][()] == pytest.approx(0.1)  # P65's time_pp
            assert entry["data/mode"].asstr()[()] == "Transmission"
            assert entry["instrument/monochromator/energy"].attrs["units"] == "eV"
            # NXdata links to the instrument's arrays (the same objects, not copies), marked as
            # NeXus links with a `target` attribute
            assert entry["data/energy"] == entry["instrument/monochromator/energy"]
            assert entry["data/absorbed_beam"] == entry["instrument/absorbed_beam/data"]
            assert (
                entry["data/energy"].attrs["target"] == f"/{name}/instrument/monochromator/energy"
            )
            assert entry["data"].attrs["signal"] == "absorbed_beam"
            # arrays read back equal the inputs
            np.testing.assert_array_equal(
                entry["instrument/monochromator/energy"][()], scan["energy"]
            )
            for path_in_entry, role in (
                ("instrument/incoming_beam/data", "i0"),
                ("instrument/absorbed_beam/data", "it"),
                ("instrument/reference_beam/data", "iref"),
                ("instrument/fluorescence/data", "if"),
                ("monitor/data", "i0"),
            ):
                np.testing.assert_array_equal(entry[path_in_entry][()], scan["channels"][role])


def test_scan_with_only_mu_uses_it_as_absorbed_beam(tmp_path):
    scan = xdi_mu_message("fe_metal_rt.xdi")
    with NexusWriter(tmp_path / "fe.nxs") as writer:
        writer.write_scan(scan, "foil/1")
    with h5py.File(tmp_path / "fe.nxs", "r") as f:
        absorbed = f["entry1/instrument/absorbed_beam"]
        assert f["entry1/data/mode"].asstr()[()] == "Transmission"  # from the column `mutrans`
        np.testing.assert_array_equal(absorbed["data"][()], scan["channels"]["mu"])


def test_each_message_is_written_once_even_when_delivered_again(tmp_path, scans):
    path = tmp_path / "once.nxs"
    keys = [f"raw-scans/{i + 1}" for i in range(len(scans))]
    with NexusWriter(path) as writer:
        for scan, key in zip(scans, keys, strict=True):
            assert writer.write_scan(scan, key) is not None
            assert writer.write_scan(scan, key) is None  # redelivered at once
    # ... and again after a restart: the keys are read back from the file
    with NexusWriter(path) as writer:
        assert [writer.write_scan(s, k) for s, k in zip(scans, keys, strict=True)] == [None, None]
        assert writer.write_scan(scans[0], "raw-scans/3") == "entry3"
    with h5py.File(path, "r") as f:
        assert sorted(f[n].attrs[KEY_ATTR] for n in f) == [*keys, "raw-scans/3"]


def test_readers_open_the_file_while_the_writer_holds_it(tmp_path, scans):
    path = tmp_path / "live.nxs"
    writer = NexusWriter(path).open()
    try:
        writer.write_scan(scans[0], "raw-scans/1")
        first = read_in_other_process(path)
        assert list(first) == ["entry1"]
        writer.write_scan(scans[1], "raw-scans/2")
        writer.write_scan(scans[1], "raw-scans/2")
        writer.write("xas/spectrum", result_message(scans[0]), "spectra/1")
        second = read_in_other_process(path)
        assert writer.file.swmr_mode  # still open for writing, in SWMR mode
    finally:
        writer.close()
    assert [v["key"] for v in second.values()] == ["raw-scans/1", "raw-scans/2", "spectra/1"]
    for name, scan in zip(("entry1", "entry2"), scans, strict=True):
        assert second[name]["energy_sum"] == pytest.approx(float(np.sum(scan["energy"])))
        assert second[name]["it_sum"] == pytest.approx(float(np.sum(scan["channels"]["it"])))


def test_a_reader_polling_while_entries_are_added_always_sees_a_consistent_file(tmp_path, scans):
    path = tmp_path / "polled.nxs"
    poller = textwrap.dedent(
        """
        import sys, time, h5py
        seen, errors = [], []
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with h5py.File(sys.argv[1], "r", swmr=True) as f:
                    n = len(f)
                    for name in f:
                        f[name + "/title"][()]
            except (OSError, KeyError) as exc:
                errors.append(str(exc)); continue
            if not seen or seen[-1] != n:
                seen.append(n)
            if n >= 6:
                break
            time.sleep(0.01)
        print(seen, len(errors))
        """
    )
    with NexusWriter(path) as writer:
        writer.write_scan(scans[0], "raw/0")
        reader = subprocess.Popen(
            [sys.executable, "-c", poller, str(path)], stdout=subprocess.PIPE, text=True
        )
        for i in range(1, 6):
            writer.write_scan(scans[i % 2], f"raw/{i}")
        out, _ = reader.communicate(timeout=90)
    seen_text, errors = out.rsplit(" ", 1)
    seen = json.loads(seen_text)
    assert seen[-1] == 6
    assert seen == sorted(seen)
    assert int(errors) == 0


def test_processed_results_as_nxprocess_and_nxdata(tmp_path, scans):
    path = tmp_path / "results.nxs"
    spectrum = result_message(scans[0])
    merged = result_message(scans[1], merged=True)
    with NexusWriter(path) as writer:
        assert writer.write("xas/spectrum", spectrum, "spectra/1") == "entry1"
        assert writer.write("xas/merged", merged, "merged/1") == "entry2"
        assert writer.write("xas/merged", merged, "merged/1") is None
    with h5py.File(path, "r") as f:
        one, two = f["entry1"], f["entry2"]
        assert one["process"].attrs["NX_class"] == "NXprocess"
        assert one["process/program"].asstr()[()] == "xraylarch"
        assert one["process/results/e0"][()] == pytest.approx(7126.9)
        settings = json.loads(one["process/parameters/data"].asstr()[()])
        assert settings["autobk"]["kweight"] == 2
        assert one["data"].attrs["NX_class"] == "NXdata"
        assert one["data"].attrs["signal"] == "mu"
        np.testing.assert_array_equal(one["data/energy"][()], spectrum["arrays"]["energy"])
        np.testing.assert_array_equal(one["data/norm"][()], spectrum["arrays"]["norm"])
        np.testing.assert_array_equal(one["chi/chi"][()], spectrum["arrays"]["chi"])
        assert "kmax_suggest" not in one["process/results"]  # None values are left out
        assert two["process/results/n_merged"][()] == 2
        np.testing.assert_array_equal(two["data/mu_errors"][()], merged["arrays"]["mu_stderr"])
        assert json.loads(two["process/results/accepted"].asstr()[()]) == list(P65_SCANS)


def test_a_killed_writer_is_recovered_without_losing_or_repeating_entries(tmp_path, scans):
    path = tmp_path / "killed.nxs"
    scan_file = tmp_path / "scan.json"
    scan_file.write_text(json.dumps(scans[0]))
    code = textwrap.dedent(
        f"""
        import json, time
        from asapo_pipelines_nexus.writer import NexusWriter
        w = NexusWriter({str(path)!r}).open()
        scan = json.load(open({str(scan_file)!r}))
        w.write_scan(scan, "raw/1")
        w.write_scan(scan, "raw/2")
        print("written", flush=True)
        time.sleep(120)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
        # while it lives, a second writer is refused with a clear message naming the holder
        # (no pipeline here: a writer built by hand)
        with pytest.raises(
            NexusWriterError,
            match=rf"another nexus\.writer \(process {child.pid} on .*\) is writing it",
        ):
            NexusWriter(path).open()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # HDF5 itself now refuses a writer (the file is marked open for SWMR write)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "a", libver="latest")
    with NexusWriter(path) as writer:
        assert writer.write_scan(scans[0], "raw/2") is None  # replayed after the restart
        assert writer.write_scan(scans[1], "raw/3") == "entry3"
    with h5py.File(path, "r") as f:
        assert sorted(f[n].attrs[KEY_ATTR] for n in f) == ["raw/1", "raw/2", "raw/3"]
        np.testing.assert_array_equal(
            f["entry2/instrument/monochromator/energy"][()], scans[0]["energy"]
        )


def test_an_entry_cut_short_by_a_crash_is_rewritten(tmp_path, scans):
    path = tmp_path / "cut.nxs"
    with NexusWriter(path) as writer:
        writer.write_scan(scans[0], "raw/1")
    with h5py.File(path, "a", libver="latest") as f:  # what a crash mid-entry leaves behind
        half = f.create_group("entry2")
        half.attrs["asapo_content_type"] = "xas/scan"
    with NexusWriter(path) as writer:
        assert writer.write_scan(scans[1], "raw/2") == "entry2"
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["entry1", "entry2"]
        assert f["entry2"].attrs[KEY_ATTR] == "raw/2"
        assert "instrument" in f["entry2"]


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("image/tiff", {}, "cannot store 'image/tiff'"),
        (
            "xas/scan",
            {"energy": [1.0, 2.0], "channels": {"i0": [1.0, 2.0]}},
            "needs I0 and an absorbed",
        ),
        (
            "xas/scan",
            {"energy": [1.0, 2.0], "channels": {"i0": [1.0], "it": [1.0]}},
            "has 1 points",
        ),
        ("xas/scan", {"channels": {"i0": [1.0], "it": [1.0]}}, "energy is missing"),
        ("xas/spectrum", {"arrays": {"energy": [1.0]}}, "no energy and mu arrays"),
        # a merge that says it merged scans has their spectrum: without one it is no merge of
        # nothing (which is an entry, `nothing_merged`) but a broken message
        ("xas/merged", {"n_merged": 2, "arrays": {}}, "no energy and mu arrays"),
        ("xas/scan", {"energy": ["a"], "channels": {}}, "energy is not a list of numbers"),
    ],
)
def test_bad_messages_are_clear_errors_and_write_nothing(tmp_path, content_type, body, message):
    path = tmp_path / "bad.nxs"
    with NexusWriter(path) as writer:
        with pytest.raises(NexusWriterError, match=message) as info:
            writer.write(content_type, body, "bad/1")
        assert isinstance(info.value, PipelinesError)
        assert not writer.has("bad/1")
    with h5py.File(path, "r") as f:
        assert list(f) == []


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    with pytest.raises(NexusWriterError, match="cannot create the folder"):
        NexusWriter(blocker / "out.nxs").open()


def test_entries_pass_the_nexus_validator(tmp_path, scans):
    """NeXpy's validator (nexusformat, with the NeXus definitions bundled): scan entries against
    the NXxas application definition, result entries against the base classes."""
    validate = pytest.importorskip("nexusformat.nexus.validate")
    path = tmp_path / "valid.nxs"
    timed = xdi_mu_message("fe_metal_rt.xdi")
    timed["metadata"]["count_time"] = 1.0
    with NexusWriter(path) as writer:
        writer.write_scan(scans[0], "raw/1")
        writer.write_scan(timed, "raw/2")
        writer.write_result(result_message(scans[0]), "spectra/1")
        writer.write_result(result_message(scans[1], merged=True), "merged/1", "xas/merged")
        # no time per point in the file: NXxas's monitor/preset is left out, not invented
        writer.write_scan(xdi_mu_message("fe_metal_rt.xdi"), "raw/3")
    for entry in ("entry1", "entry2"):
        warnings, errors = validate.validate_application(str(path), path=entry)
        assert (warnings, errors) == (0, 0), entry
    for entry in ("entry3", "entry4"):
        # only warnings allowed: our provenance attributes are extensions to NXentry
        assert validate.validate_file(str(path), path=entry)[1] == 0, entry
    # the one error the README names: the preset the scan file does not give
    assert validate.validate_application(str(path), path="entry5") == (0, 1)


def _nothing_merged(merged: dict) -> dict:
    """The merge message of a group whose scans disagree with no majority: no arrays."""
    return {
        **merged,
        "n_merged": 0,
        "n_scans": len(merged["accepted"]),
        "accepted": [],
        "rejected": [{"scan": s, "reasons": ["no majority: ..."]} for s in merged["accepted"]],
        "no_majority": {"scans": list(merged["accepted"]), "reason": "the 2 scans disagree"},
        "arrays": {},
        "values": {},
        "settings": {},
    }


def test_a_merge_of_nothing_is_kept_as_the_newest_when_reopened_and_salvaged(tmp_path, scans):
    """The entry of a merge of no scan is an entry like the others: a writer reopening the
    file finds it the newest merge (the root's `default`), a delivery again is no second
    entry, and a damaged file's salvage copies it with the others."""
    path = tmp_path / "nothing.nxs"
    merged = result_message(scans[1], merged=True)
    with NexusWriter(path) as writer:
        assert writer.write("xas/merged", merged, "merge/1") == "entry1"
        assert writer.write("xas/merged", _nothing_merged(merged), "merge/2") == "entry2"
        assert writer.write("xas/merged", _nothing_merged(merged), "merge/2") is None
    size = path.stat().st_size
    with h5py.File(path, "a", libver="latest") as f:
        assert f.attrs["default"] == "entry2"
        assert "data" not in f["entry2"]
        assert "notes" in f["entry2"]
        del f.attrs["default"]  # as a file of an older writer has none
    with NexusWriter(path) as writer:
        assert writer.entries_in_file == 2
        writer.write_scan(scans[0], "raw/1")
    with h5py.File(path, "r") as f:
        assert f.attrs["default"] == "entry2"  # a scan is not a merge: the merge of nothing stays
    # the scan's entry cut short on the disk: the salvage keeps the two merges
    os.truncate(path, size + (path.stat().st_size - size) // 2)
    with NexusWriter(path) as writer:
        assert writer.salvaged is not None
        assert writer.salvaged.entries == 2
    with h5py.File(path, "r") as f:
        assert sorted(f[n].attrs[KEY_ATTR] for n in f) == ["merge/1", "merge/2"]
        assert f.attrs["default"] == "entry2"
        assert "data" not in f["entry2"]
        assert "no majority" in f["entry2/title"][()].decode()


@pytest.mark.parametrize(
    ("rejected", "no_majority", "why"),
    [
        (
            [{"scan": "p65/scans|scans|key:a.xdi", "reasons": ["beam loss: I0 low"]}],
            None,
            "its one scan rejected: beam loss: I0 low",
        ),
        (
            [{"scan": f"key:{n}.xdi", "reasons": ["beam loss: I0 low"]} for n in "abc"],
            None,
            "all 3 scans rejected",
        ),
        (
            [{"scan": f"key:{n}.xdi", "reasons": ["no majority: ..."]} for n in "ab"],
            {"scans": ["key:a.xdi", "key:b.xdi"], "reason": "the 2 scans disagree"},
            "no majority: 2 scans disagree in E0 or edge step",
        ),
    ],
)
def test_a_merge_of_nothing_says_why_in_its_title_and_notes(tmp_path, rejected, no_majority, why):
    body = {
        "group": {"sample": "S", "element": "Fe", "edge": "K"},
        "n_merged": 0,
        "n_scans": len(rejected),
        "accepted": [],
        "rejected": rejected,
        "arrays": {},
        "values": {},
        "settings": {},
        **({"no_majority": no_majority} if no_majority else {}),
    }
    path = tmp_path / "why.nxs"
    with NexusWriter(path) as writer:
        name = writer.write("xas/merged", body, "merge/1")
    with h5py.File(path, "r") as f:
        entry = f[name]
        assert entry["title"][()].decode() == f"merge 1 of S, Fe, K: nothing merged ({why})"
        notes = entry["notes/data"][()].decode()
        assert notes.startswith("Nothing merged of S, Fe, K: ")
        for scan in rejected:
            assert f"{scan['scan'].rpartition('key:')[2]}: {scan['reasons'][0]}" in notes
        if no_majority:
            assert entry["process/results/no_majority"][()].decode() == no_majority["reason"]
        assert f.attrs["default"] == name


def test_a_viewer_is_never_sent_to_a_decision_even_in_a_file_of_scans_and_decisions(
    tmp_path, scans
):
    """A writer given raw scans and an agent's plans (no spectra): its decisions are the
    newest entries, but hold nothing to plot; the root's `default` names the newest scan."""
    path = tmp_path / "scans-and-decisions.nxs"
    plan = {
        "action": "more_scans",
        "arguments": {"scans": 1, "metrics": {"n_merged": 1}},
        "reason": "noise above the target",
        "confidence": 0.5,
        "target": "20K_GOE_Fe_K_240/Fe/K/transmission",
        "time": "2026-12-06T08:17:51+00:00",
    }
    with NexusWriter(path) as writer:
        written = [writer.write("xas/scan", scan, f"raw-scans/{i}") for i, scan in enumerate(scans)]
        decision = writer.write("plan/suggestion", plan, "plans/1")
    with h5py.File(path, "r") as f:
        assert is_decision(f[decision])
        assert not any(is_decision(f[n]) for n in written)
        entry = f[f.attrs["default"]]
        assert entry.name == f"/{written[-1]}"
        data = entry[entry.attrs["default"]]
        assert data.attrs["NX_class"] == "NXdata"
        assert data.attrs["signal"] in data
