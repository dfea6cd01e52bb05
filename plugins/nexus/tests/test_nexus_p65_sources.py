"""A merge's `provenance/source_files` as a reader citing it sees them, after a real P65 run
(`pipeline run` of the example, both reference plugins): only the scans the merge accepted, so
a duplicate copy of a scan, which the merge rejects, is not cited as data of the spectrum. An
agent's decision cites the files of the merge it judged (they were empty: a reader could not
tell which scans a "more scans" was judged on), and names that merge's entry (`based_on`), also
when it was written before the merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from nexus_cli import pipeline_ok
from nexus_testdata import DATA, P65_SCANS

from asapo_pipelines_nexus.writer import CONTENT_ATTR, is_decision

pytest.importorskip("asapo_pipelines_xas")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "p65-xas.pipeline.yaml"
#: a copy of the first scan under a name the example's pattern takes: the merge rejects it.
#: Read between the repeats (the second saved as SECOND): a copy that changes nothing merged
#: makes no merge of its own, the second repeat's merge lists it
DUPLICATE = "20K_GOE_Fe_K_240.00001.xdi"
SECOND = "20K_GOE_Fe_K_240.00002.xdi"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _note(entry, name) -> list[str]:
    path = f"provenance/{name}/data"
    return json.loads(_text(entry[path][()])) if path in entry else []


def _inputs(entry) -> dict:
    return json.loads(_text(entry["provenance/inputs/data"][()]))


def _address(ref: dict) -> str:
    return json.dumps(ref, sort_keys=True)


def _cited(path: Path) -> tuple[dict[str, dict], list[dict]]:
    """The merges of a results file by their message's address, and its decisions: the files
    each cites, and, of a decision, the merge message it judged (its first input)."""
    merges, decisions = {}, []
    with h5py.File(path, "r", locking=False) as f:
        for name, entry in f.items():
            cited = {
                "entry": name,
                "title": _text(entry["title"][()]),
                "source_files": _note(entry, "source_files"),
                "rejected_source_files": _note(entry, "rejected_source_files"),
            }
            if is_decision(entry):
                judged = _address(_inputs(entry)["inputs"][0])
                based_on = _text(entry["decision/based_on"][()])
                decisions.append({**cited, "judged": judged, "based_on": based_on})
            elif _text(entry.attrs.get(CONTENT_ATTR, "")) == "xas/merged":
                merges[_address(_inputs(entry)["message"])] = cited
    return merges, decisions


def _cite_as_their_merges(merges: dict[str, dict], decisions: list[dict]) -> None:
    assert decisions, "the example's agent decided nothing"
    for decision in decisions:
        merge = merges.get(decision["judged"])
        assert merge is not None, f"{decision['title']}: its merge's entry is not in the file"
        assert decision["source_files"] == merge["source_files"], decision["title"]
        assert decision["rejected_source_files"] == merge["rejected_source_files"]
        assert decision["based_on"] == merge["entry"], decision["title"]
    assert all(d["source_files"] for d in decisions)
    # the duplicate the merge screened out is cited apart, as the merge cites it
    assert any(d["rejected_source_files"] for d in decisions)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The results file of a real P65 run of two repeats and a duplicate copy of the first."""
    work = tmp_path_factory.mktemp("p65-sources")
    (work / "data").mkdir()
    shutil.copy(DATA / P65_SCANS[0], work / "data" / P65_SCANS[0])
    shutil.copy(DATA / P65_SCANS[1], work / "data" / SECOND)
    shutil.copy(DATA / P65_SCANS[0], work / "data" / DUPLICATE)
    shutil.copy(EXAMPLE, work / EXAMPLE.name)
    pipeline_ok(work, "run", EXAMPLE.name)
    return work / "results" / "p65.nxs"


@pytest.fixture(scope="module")
def merges(results) -> list[dict]:
    found = []
    with h5py.File(results, "r", locking=False) as f:
        for entry in f.values():
            if _text(entry.attrs.get(CONTENT_ATTR, "")) != "xas/merged":
                continue
            merged = entry["process/results"]
            found.append(
                {
                    "accepted": json.loads(_text(merged["accepted"][()])),
                    "rejected": json.loads(_text(merged["rejected"][()])),
                    "source_files": _note(entry, "source_files"),
                    "rejected_source_files": _note(entry, "rejected_source_files"),
                }
            )
    return found


def _file(scan_id: str) -> str:
    return scan_id.rpartition("key:")[2]


def test_a_merge_cites_only_the_scans_it_accepted(merges):
    assert merges, "the run wrote no merge"
    # the duplicate copy was screened out by the merge at least once (its data are the first
    # scan's), so this run tests what it means to
    assert any(m["rejected"] for m in merges)
    for merge in merges:
        accepted = {_file(s) for s in merge["accepted"]}
        assert set(merge["source_files"]) == accepted
        assert set(merge["rejected_source_files"]) == {_file(r["scan"]) for r in merge["rejected"]}
        assert not accepted & set(merge["rejected_source_files"])
    last = merges[-1]
    assert len(last["source_files"]) == 2
    assert {*last["source_files"], *last["rejected_source_files"]} == {
        P65_SCANS[0],
        SECOND,
        DUPLICATE,
    }


def test_a_decision_cites_the_scans_of_the_merge_it_judged(results):
    _cite_as_their_merges(*_cited(results))


@pytest.mark.parametrize("writers", ["one writer", "reopened between them"])
def test_a_decision_written_before_its_merge_cites_the_same_scans(
    results, tmp_path, unit_harness, unit_message, writers
):
    """The run's own decisions and merges (from its store) given to a writer of a new file
    decisions first, as a writer gets them when the merges are late, in another session, or
    rebuilt after them: each decision still cites its merge's scans, and names its entry once
    the merge is written (its `based_on` was left empty), also by a writer of a later session
    of the same file."""
    work = results.parent.parent

    def stored(stream: str, port: str) -> list:
        out = pipeline_ok(work, "tail", EXAMPLE.name, stream, "--all", "--json", "--run", "r1")
        records = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        return [
            unit_message(
                r["value"],
                port=port,
                data_source=r["source"],
                stream=r["stream"],
                id=r["id"],
                metadata=r["metadata"],
            )
            for r in records
        ]

    path = tmp_path / "late-merges.nxs"
    plans, merged = stored("plans", "plans"), stored("merged", "merged")
    batches = [[*plans, *merged]] if writers == "one writer" else [plans, merged]
    for batch in batches:
        harness = unit_harness("nexus.writer", params={"file": str(path)})
        harness.send(*batch)
        assert harness.result.errors == []
        harness.shutdown()
    _cite_as_their_merges(*_cited(path))


def test_a_file_whose_decisions_name_no_merge_gets_them_named_when_opened(
    results, tmp_path, unit_harness
):
    """A results file written before decisions were filled in (or by a writer that crashed
    before it could) holds decisions with an empty `based_on` while their merges' entries are
    in the file: the next writer that opens it names them."""
    path = tmp_path / "older.nxs"
    shutil.copy(results, path)
    with h5py.File(path, "r+", locking=False) as f:
        emptied = [n for n, e in f.items() if is_decision(e)]
        for name in emptied:
            f[name]["decision/based_on"][()] = ""
    assert emptied
    assert all(d["based_on"] == "" for d in _cited(path)[1])
    harness = unit_harness("nexus.writer", params={"file": str(path)})
    harness.send()
    harness.shutdown()
    _cite_as_their_merges(*_cited(path))
