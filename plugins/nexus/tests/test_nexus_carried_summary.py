"""A `nexus.writer` restarted within its run session counts on from the summary its killed
predecessor published (`context.carried_summary`): before, the run's summary counted only the
last process's entries, as if the others were lost."""

from __future__ import annotations

from nexus_testdata import P65_SCANS, p65_scan_message
from test_nexus_units import entries_by_key, with_key


def test_a_restarted_writer_counts_the_entries_of_the_session(tmp_path, unit_harness, unit_message):
    path = tmp_path / "out" / "p65.nxs"
    first_scan, second_scan = (p65_scan_message(name) for name in P65_SCANS[:2])
    first = unit_harness("nexus.writer", params={"file": str(path)})
    first.send(with_key(unit_message, first_scan, "raw/scan-0", "scans"))
    published = first.shutdown().summary  # what the worker left in its last status record

    again = unit_harness("nexus.writer", params={"file": str(path)})
    again.runner.context.carried_summary = published
    again.send(
        # not acknowledged before the kill: delivered again, and found in the file
        with_key(unit_message, first_scan, "raw/scan-0", "scans", msg_id=1, delivery_count=2),
        with_key(unit_message, second_scan, "raw/scan-1", "scans"),
    )
    summary = again.shutdown().summary

    f, entries = entries_by_key(path)
    with f:
        in_file = len(entries)
    assert (summary["entries_written"], summary["scans_written"]) == (in_file, in_file)
    assert summary["duplicates_skipped"] == 1
