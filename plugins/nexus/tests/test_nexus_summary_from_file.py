"""A `nexus.writer` restarted after a kill corrects the summary it counts on from by the NeXus
file: the entries its predecessor wrote after publishing its last status record are in the
file, not in that record, and the run's summary must not be short by them (as `core.jsonl-sink`
corrects its count by the lines of its file)."""

from __future__ import annotations

from collections import Counter

from nexus_testdata import P65_SCANS, p65_scan_message, result_message, xdi_mu_message
from test_nexus_units import entries_by_key, with_key

from asapo_pipelines_nexus.writer import CONTENT_ATTR

PORT_OF = {"xas/scan": "scans", "xas/spectrum": "spectra", "xas/merged": "merged"}


def written_by_port(path) -> Counter:
    """The entries the file holds, by the writer's input port of their content type."""
    f, entries = entries_by_key(path)
    with f:
        return Counter(PORT_OF[str(g.attrs[CONTENT_ATTR])] for g in entries.values())


def test_entries_written_after_the_last_status_record_are_counted(
    tmp_path, unit_harness, unit_message
):
    path = tmp_path / "out" / "p65.nxs"
    first_scan, second_scan = (p65_scan_message(name) for name in P65_SCANS)
    # (body, key, port) of what the killed process wrote after its last status record
    later = (
        (second_scan, "raw/scan-1", "scans"),
        (result_message(first_scan), "norm/scan-0", "spectra"),
    )
    killed = unit_harness("nexus.writer", params={"file": str(path)})
    killed.send(with_key(unit_message, first_scan, "raw/scan-0", "scans"))
    # the status record the worker sent last; what the process wrote after it is in the file
    published = killed.runner.summary(running=True)
    killed.send(*(with_key(unit_message, *sent) for sent in later))
    killed.shutdown()  # its summary is lost with the process; the file keeps its entries

    again = unit_harness("nexus.writer", params={"file": str(path)})
    again.runner.context.carried_summary = published
    again.runner.context.carried_after_restart = True  # killed within the session
    again.send(
        # not acknowledged before the kill: delivered again, and found in the file
        *(with_key(unit_message, *sent, msg_id=9, delivery_count=2) for sent in later),
        with_key(unit_message, xdi_mu_message("fe_metal_rt.xdi"), "raw/fe-foil", "scans"),
    )
    summary = again.shutdown().summary

    in_file = written_by_port(path)
    assert summary["entries_written"] == sum(in_file.values())
    assert (summary["scans_written"], summary["spectra_written"]) == (
        in_file["scans"],
        in_file["spectra"],
    )
    assert summary["duplicates_skipped"] == 2


def test_entries_another_writer_added_after_an_earlier_session_are_not_this_runs(
    tmp_path, unit_harness, unit_message
):
    """A resumed session counts on from the summary its run's earlier session ended with,
    which was whole: entries the file gained since then (a reprocess run writing the same
    file) are not this run's work."""
    path = tmp_path / "out" / "p65.nxs"
    first_scan, second_scan = (p65_scan_message(name) for name in P65_SCANS)
    session = unit_harness("nexus.writer", params={"file": str(path)})
    session.send(with_key(unit_message, first_scan, "raw/scan-0", "scans"))
    ended = session.shutdown().summary  # the session's final record: exact
    other = unit_harness("nexus.writer", params={"file": str(path)})  # another run's writer
    other.send(with_key(unit_message, second_scan, "raw/scan-1", "scans"))
    other.shutdown()

    resumed = unit_harness("nexus.writer", params={"file": str(path)})
    resumed.runner.context.carried_summary = ended  # carried_after_restart stays False
    resumed.send()  # started, nothing more to write
    summary = resumed.shutdown().summary

    assert sum(written_by_port(path).values()) == 2
    assert (summary["entries_written"], summary["scans_written"]) == (1, 1)


def test_merges_of_nothing_written_after_the_last_status_record_are_counted(
    tmp_path, unit_harness, unit_message
):
    """A merge of no scan is an entry (it says nothing was merged, and why): one the killed
    process wrote after its last status record is counted among the merges written and among
    `merges_without_data`, and its message, delivered again, is not written twice."""
    path = tmp_path / "out" / "p65.nxs"
    merged = result_message(p65_scan_message(P65_SCANS[0]), merged=True)
    empty = {**merged, "n_merged": 0, "accepted": [], "arrays": {}, "values": {}, "settings": {}}
    empty["rejected"] = [{"scan": s, "reasons": ["beam loss: ..."]} for s in P65_SCANS]
    killed = unit_harness("nexus.writer", params={"file": str(path)})
    killed.send(with_key(unit_message, merged, "merge/1", "merged"))
    published = killed.runner.summary(running=True)
    killed.send(with_key(unit_message, empty, "merge/2", "merged"))
    killed.shutdown()  # its summary is lost with the process; the file keeps its entries

    again = unit_harness("nexus.writer", params={"file": str(path)})
    again.runner.context.carried_summary = published
    again.runner.context.carried_after_restart = True  # killed within the session
    again.send(with_key(unit_message, empty, "merge/2", "merged", msg_id=9, delivery_count=2))
    summary = again.shutdown().summary

    assert written_by_port(path) == Counter({"merged": 2})
    assert (summary["entries_written"], summary["merged_written"]) == (2, 2)
    assert summary["merges_without_data"] == 1
    assert summary["duplicates_skipped"] == 1
