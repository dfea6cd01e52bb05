"""The raw scan files' SHA-256 and size in the NeXus file, after a real P65 run (`pipeline run`
of the example, both reference plugins): a data manager archiving the file checks that an
archived scan file is the one processed. Each raw scan entry records its file's checksum, size
and path as xas.scan-files read it (`provenance/source_file_checksums`); each spectrum, merge
and decision the checksum of every file it cites (`provenance/source_files`), also those of
a reprocess, whose raw scans are the earlier run's entries (a new writer session reads them
from the file). Before, the entries named the files only: nothing in the file told one
version of a file from another."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok, text
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"


def _note(entry: h5py.Group, name: str) -> list:
    path = f"provenance/{name}/data"
    return json.loads(text(entry[path][()])) if path in entry else []


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict[str, list[dict]]]:
    """The example's data folder and its results file's entries by content type after a run
    and a reprocess of it: each entry's run, cited files and the checksums it records."""
    work = tmp_path_factory.mktemp("p65-checksums")
    (work / "data").mkdir()
    for name in P65_SCANS:
        shutil.copy(DATA / name, work / "data" / name)
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    pipeline_ok(work, "run", EXAMPLE.name)
    pipeline_ok(work, "reprocess", EXAMPLE.name, "--from", "r1")
    entries: dict[str, list[dict]] = {}
    with h5py.File(work / "results" / "p65.nxs", "r", locking=False) as f:
        for name, entry in f.items():
            note = entry.get("provenance/source_file_checksums")
            entries.setdefault(text(entry.attrs.get(CONTENT_ATTR, "")), []).append(
                {
                    "entry": name,
                    "run": text(entry.attrs.get("asapo_run", "")),
                    "source_files": _note(entry, "source_files"),
                    "checksums": _note(entry, "source_file_checksums"),
                    "note_type": None if note is None else text(note["type"][()]),
                    "note_class": None if note is None else text(note.attrs["NX_class"]),
                    "data_dtype": None if note is None else note["data"].dtype,
                }
            )
    return work / "data", entries


def _expected(data: Path, name: str) -> dict:
    raw = (data / name).read_bytes()
    return {"file": name, "path": name, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


def test_each_raw_scan_records_its_files_sha256_size_and_path(run):
    data, entries = run
    scans = entries.get("xas/scan", [])
    assert sorted(s["source_files"][0] for s in scans) == sorted(P65_SCANS)
    for scan in scans:
        (name,) = scan["source_files"]
        assert scan["checksums"] == [_expected(data, name)], scan["entry"]
        # an NXnote of JSON like the other provenance notes, a UTF-8 string, no object array
        assert (scan["note_class"], scan["note_type"]) == ("NXnote", "application/json")
        assert h5py.check_string_dtype(scan["data_dtype"]).encoding == "utf-8"


def test_results_record_the_checksum_of_each_file_they_cite(run):
    data, entries = run
    merges = entries.get("xas/merged", [])
    assert any(len(m["source_files"]) == 2 for m in merges), "no merge of both repeats"
    cited = [*entries.get("xas/spectrum", []), *merges, *entries.get("plan/suggestion", [])]
    # the reprocess's results cite the raw scans of r1, which it did not write again
    assert {e["run"] for e in cited} == {"r1", "r2"}
    assert {s["run"] for s in entries["xas/scan"]} == {"r1"}
    for entry in cited:
        expected = [_expected(data, name) for name in entry["source_files"]]
        assert entry["checksums"] == expected, entry["entry"]


def _provenance(entry: h5py.Group) -> dict:
    return json.loads(text(entry["provenance/inputs/data"][()]))


def test_a_reprocess_cites_the_earlier_runs_raw_entries_it_replayed(run):
    """A reprocess (r2) replays r1's raw scan messages into its own streams and stores none of
    them again: its spectra cite (`inputs`) raw scan messages of r2 that no entry was written
    from. Each result names the raw entries it comes from (`raw_scans`: entry, pipeline, run
    and its start, and the message that entry was written from), which a data manager
    follows to the raw data, r1's entries for the reprocess."""
    data, _ = run
    with h5py.File(data.parent / "results" / "p65.nxs", "r", locking=False) as f:
        by_message = {
            json.dumps(_provenance(e)["message"], sort_keys=True): name for name, e in f.items()
        }
        results = [e for e in f.values() if text(e.attrs[CONTENT_ATTR]) != "xas/scan"]
        replayed = 0
        for entry in results:
            cited = _provenance(entry)
            raw_scans = cited.get("raw_scans")
            assert raw_scans, entry.name
            # one raw entry per file the result cites, in that order, each the file's
            assert all(r["entry"] for r in raw_scans), entry.name
            raw_files = [_note(f[r["entry"]], "source_files")[0] for r in raw_scans]
            assert raw_files == _note(entry, "source_files"), entry.name
            for raw in raw_scans:
                held = f[raw["entry"]]
                assert text(held.attrs[CONTENT_ATTR]) == "xas/scan"
                assert raw["run"] == text(held.attrs["asapo_run"])
                assert raw["run_started"] == text(held.attrs["asapo_run_started"])
                assert raw["pipeline"] == text(held.attrs["asapo_pipeline"])
                assert raw["message"] == _provenance(held)["message"]
            if text(entry.attrs[CONTENT_ATTR]) == "xas/spectrum":
                (source,) = cited["inputs"]
                if text(entry.attrs["asapo_run"]) == "r2":
                    # the replayed raw message has no entry: r1's raw entry stands for it
                    assert json.dumps(source, sort_keys=True) not in by_message
                    assert [r["run"] for r in raw_scans] == ["r1"]
                    replayed += 1
                else:
                    assert by_message[json.dumps(source, sort_keys=True)] == raw_scans[0]["entry"]
        assert replayed == len(P65_SCANS)
