"""What the NeXus writer stores, as a reader sees it: a new run that reuses an old run's label
(the store was deleted or its run index pruned) is written, a re-run of the same run is not;
the units of scalar results and of a ready mu; and a merge's provenance naming every spectrum
it merged, with the measurement time."""

from __future__ import annotations

import json

import h5py
import pytest
from nexus_testdata import P65_SCANS, p65_scan_message, result_message, xdi_mu_message

from asapo_pipelines_nexus.writer import KEY_ATTR

RUN_A = {"run": "r1", "started": 1_700_000_000.0, "pipeline_file": "/x/p65.pipeline.yaml"}
#: the same label after the store was deleted: another run
RUN_B = {"run": "r1", "started": 1_700_086_400.0, "pipeline_file": "/x/p65.pipeline.yaml"}


@pytest.fixture(scope="module")
def scans() -> list[dict]:
    return [p65_scan_message(name) for name in P65_SCANS]


def message(unit_message, body, key, port, *, run="r1", msg_id=None, source="p65-xas.r1.up"):
    prov = {"unit": "p65/up", "port": port, "inputs": [], "seq": 0, "key": key, "run": run}
    prov["fingerprint"] = "f" * 16
    return unit_message(
        body, port=port, metadata={"provenance": prov}, id=msg_id, data_source=source
    )


def write(unit_harness, path, run, *messages):
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.runner.context.run = dict(run)
    harness.send(*messages)
    assert harness.result.errors == []
    return harness.shutdown().summary


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_a_new_run_reusing_an_old_label_is_written_and_a_rerun_is_not(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    first = message(unit_message, scans[0], "raw/0", "scans")
    assert write(unit_harness, path, RUN_A, first)["entries_written"] == 1
    # the same run again (a restart or a resume): stored once
    again = write(unit_harness, path, RUN_A, first)
    assert (again["entries_written"], again["duplicates_skipped"]) == (0, 1)
    # run ids started again at r1 (deleted store): a different run, its entry is written
    other = write(unit_harness, path, RUN_B, first)
    assert (other["entries_written"], other["duplicates_skipped"]) == (1, 0)
    with h5py.File(path, "r") as f:
        starts = sorted(_text(e["provenance/run_started"][()]) for e in f.values())
        assert [_text(e.attrs["asapo_run"]) for e in f.values()] == ["r1", "r1"]
    assert starts[0].startswith("2023-11-14T22:13:20")
    assert starts[1].startswith("2023-11-15")


def test_replayed_messages_of_another_run_are_not_stored_twice(
    tmp_path, unit_harness, unit_message, scans
):
    """A reprocess (run r2) replays r1's source messages: the writer does not know when r1
    started, and still recognises r1's scans in the file."""
    path = tmp_path / "p65.nxs"
    write(unit_harness, path, RUN_A, message(unit_message, scans[0], "raw/0", "scans"))
    replay = {"run": "r2", "started": RUN_A["started"] + 60}
    summary = write(unit_harness, path, replay, message(unit_message, scans[0], "raw/0", "scans"))
    assert (summary["entries_written"], summary["duplicates_skipped"]) == (0, 1)


def test_entries_written_before_run_identities_are_found_by_their_run(
    tmp_path, unit_harness, unit_message, scans
):
    """A file from an older writer keys entries by the run label only; a resumed run finds
    them through the run start in their provenance, a later run of that label does not."""
    path = tmp_path / "p65.nxs"
    write(unit_harness, path, RUN_A, message(unit_message, scans[0], "raw/0", "scans"))
    with h5py.File(path, "a") as f:
        entry = next(iter(f.values()))
        key = _text(entry.attrs[KEY_ATTR])
        entry.attrs[KEY_ATTR] = key.replace(key.split("|run:")[1].split("|")[0], "r1")
    same = write(unit_harness, path, RUN_A, message(unit_message, scans[0], "raw/0", "scans"))
    assert same["duplicates_skipped"] == 1
    later = write(unit_harness, path, RUN_B, message(unit_message, scans[0], "raw/0", "scans"))
    assert later["entries_written"] == 1


def test_scalar_results_and_a_ready_mu_carry_nexus_units(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    spectrum = result_message(scans[0])
    spectrum["values"].update(noise_kmin=2.0, noise_kmax=14.5, kmax_suggest=12.3)
    write(
        unit_harness,
        path,
        RUN_A,
        message(unit_message, spectrum, "norm/0", "spectra"),
        message(unit_message, xdi_mu_message("fe_metal_rt.xdi"), "raw/mu", "scans"),
    )
    with h5py.File(path, "r") as f:
        by_type = {_text(e.attrs["asapo_content_type"]): e for e in f.values()}
        results = by_type["xas/spectrum"]["process/results"]
        units = {k: _text(results[k].attrs.get("units")) for k in results if k != "epsilon_k"}
        assert units == {
            "e0": "eV",
            "edge_step": "None",
            "noise_kmin": "1/angstrom",
            "noise_kmax": "1/angstrom",
            "kmax_suggest": "1/angstrom",
        }
        absorbed = by_type["xas/scan"]["instrument/absorbed_beam/data"]
        assert "units" not in absorbed.attrs  # an absorbance: no unit, never "counts"
        assert "dimensionless" in _text(absorbed.attrs["long_name"])
        assert _text(by_type["xas/scan"]["instrument/incoming_beam/data"].attrs["units"]) == (
            "counts"
        )


def test_a_merge_names_every_spectrum_it_merged_and_when_they_were_measured(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    spectra = []
    for i, scan in enumerate(scans, start=1):
        body = result_message(scan)
        body["metadata"]["scan_id"] = P65_SCANS[i - 1]
        body["metadata"]["start_time"] = f"2020-11-22T0{i}:00:00"
        spectra.append(
            message(unit_message, body, f"norm/{i}", "spectra", msg_id=i, source="p65.r1.spectra")
        )
    merged = result_message(scans[1], merged=True)
    merged.pop("metadata")  # a merge's body has its group, no scan metadata
    merge = message(unit_message, merged, "merge/2", "merged", msg_id=2, source="p65.r1.merged")
    merge.metadata["provenance"]["inputs"] = [
        {"data_source": "p65.r1.spectra", "stream": "default", "id": 2}
    ]
    write(unit_harness, path, RUN_A, *spectra, merge)
    with h5py.File(path, "r") as f:
        entry = next(e for e in f.values() if e.attrs["asapo_content_type"] == "xas/merged")
        inputs = json.loads(_text(entry["provenance/inputs/data"][()]))
        start = entry["start_time"]
        assert sorted(i["id"] for i in inputs["inputs"]) == [1, 2]
        assert [m["scan"] for m in inputs["merged"]] == list(P65_SCANS)
        assert all(m["entry"].startswith("entry") for m in inputs["merged"])
        assert _text(start[()]) == "2020-11-22T01:00:00"  # the earliest member's
        assert "note" not in start.attrs


def test_a_merge_without_measurement_times_says_its_start_time_is_the_write_time(
    tmp_path, unit_harness, unit_message, scans
):
    path = tmp_path / "p65.nxs"
    merged = result_message(scans[1], merged=True)
    merged.pop("metadata")
    write(unit_harness, path, RUN_A, message(unit_message, merged, "merge/1", "merged"))
    with h5py.File(path, "r") as f:
        start = next(iter(f.values()))["start_time"]
        assert "time the entry was written" in _text(start.attrs["note"])


def test_two_pipelines_in_one_file_are_told_apart_by_pipeline_and_run(
    tmp_path, unit_harness, unit_message, scans, caplog
):
    """Both pipelines have a run r1: a run label alone mixes them, the entries name their
    pipeline too, and the writer of the second says that the file holds the first's."""
    path = tmp_path / "p65.nxs"
    for pipeline, scan in (("p65-xas", scans[0]), ("p65-reprocess", scans[1])):
        run = {**RUN_A, "pipeline": pipeline}
        prov = {"unit": f"{pipeline}/scans", "port": "scans", "inputs": [], "seq": 0}
        prov.update(key=f"{pipeline}/scans|scans|key:x", run="r1", fingerprint="f" * 16)
        sent = unit_message(scan, port="scans", metadata={"provenance": prov})
        assert write(unit_harness, path, run, sent)["entries_written"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"{path} already holds entries of pipeline p65-xas; those of pipeline p65-reprocess go "
        "beside them: tell them apart by the entries' asapo_pipeline attribute, then asapo_run"
    ]
    with h5py.File(path, "r") as f:
        entries = list(f.values())
        assert [_text(e.attrs["asapo_run"]) for e in entries] == ["r1", "r1"]
        assert [_text(e.attrs["asapo_pipeline"]) for e in entries] == ["p65-xas", "p65-reprocess"]
        # the titles a viewer lists: each names its pipeline (both runs are r1)
        titles = [_text(e["title"][()]) for e in entries]
        assert titles[0] == "p65-xas r1: 20K_GOE_Fe_K_240.00000.xdi", titles
        assert titles[1] == "p65-reprocess r1: 20K_GOE_Fe_K_240.00001.xdi", titles
        for entry in entries:
            prov = entry["provenance"]
            assert _text(prov["pipeline"][()]) == _text(prov["writer_pipeline"][()])
            assert _text(prov["pipeline"][()]) == _text(entry.attrs["asapo_pipeline"])
        # the README's recipe: one run of one pipeline
        picked = [
            e.name
            for e in f.values()
            if e.attrs.get("asapo_pipeline") == "p65-reprocess" and e.attrs.get("asapo_run") == "r1"
        ]
        assert picked == ["/entry2"]


def test_a_pipelines_titles_keep_one_style_when_another_pipeline_writes_the_file(
    tmp_path, unit_harness, unit_message, scans
):
    """An outside tester's file: pipeline ex wrote its r1 (titles `r1: ...`), pipeline ex2
    its r1 (`ex2 r1: ...`), then ex its r2 (`ex r2: ...`): the two r1 were one bare label
    and ex's titles changed style partway. Every title now leads with its pipeline, from the
    first entry on; the entries' names and keys are as before."""
    path = tmp_path / "shared.nxs"
    written = [("ex", "r1", scans[0]), ("ex2", "r1", scans[0]), ("ex", "r2", scans[1])]
    for pipeline, label, scan in written:
        run = {**RUN_A, "run": label, "pipeline": pipeline}
        prov = {"unit": f"{pipeline}/scans", "port": "scans", "inputs": [], "seq": 0}
        prov.update(key=f"{pipeline}/scans|scans|key:x", run=label, fingerprint="f" * 16)
        sent = unit_message(scan, port="scans", metadata={"provenance": prov})
        assert write(unit_harness, path, run, sent)["entries_written"] == 1
    with h5py.File(path, "r") as f:
        assert list(f) == ["entry1", "entry2", "entry3"]
        titles = {}
        for entry in f.values():
            pipeline, label = (_text(entry.attrs[a]) for a in ("asapo_pipeline", "asapo_run"))
            title = _text(entry["title"][()])
            assert title == f"{pipeline} {label}: {_file(entry)}"
            titles[(pipeline, label)] = title
    assert len(set(titles.values())) == len(written), titles  # ex r1 and ex2 r1 differ
    assert [titles[(p, r)].split(":")[0] for p, r, _ in written] == ["ex r1", "ex2 r1", "ex r2"]


def _file(entry) -> str:
    """The scan file of a raw scan entry, as its metadata says (the title's own words)."""
    return str(json.loads(_text(entry["asapo/metadata"][()]))["file"])
