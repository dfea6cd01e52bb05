"""`xas.normalize` and `xas.convergence-agent` summaries count every file and decision of the
run: past the files the summary lists (SUMMARY_ITEMS), and on from the summary a worker is
handed when it restarts or a run resumes (`carried_summary`), without counting a file or a
merge twice."""

from __future__ import annotations

import shutil

from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines.testing.harness import UnitHarness, message, run_unit
from asapo_pipelines_xas.units import SUMMARY_ITEMS

#: more files than a summary lists
FILES = SUMMARY_ITEMS + 5


def scans_of(directory):
    scans = run_unit("xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi"})
    return [message(o.value, metadata=o.metadata) for o in scans.outputs]


def test_normalize_counts_every_file_past_those_it_lists(tmp_path):
    for index in range(FILES):
        shutil.copy(DATA / P65_SCANS[index % 2], tmp_path / f"repeat_{index:03d}.xdi")
    scans = scans_of(tmp_path)
    assert len(scans) == FILES

    summary = run_unit("xas.normalize", scans, params=REFERENCE_SETTINGS).summary

    assert summary["spectra"] == FILES
    assert len(summary["scans"]) == SUMMARY_ITEMS


def normalize_handed(carried):
    harness = UnitHarness("xas.normalize", REFERENCE_SETTINGS)
    harness.runner.context.carried_summary = carried
    return harness


def test_normalize_counts_on_from_the_carried_summary_without_counting_a_file_twice(tmp_path):
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    first, second = scans_of(tmp_path)
    # an earlier process normalized the first file, and more files than its summary lists
    earlier = run_unit("xas.normalize", [first], params=REFERENCE_SETTINGS).summary
    listed = earlier["scans"][0]
    carried = {"spectra": FILES, "scans": [listed]}

    again = normalize_handed(carried).run([first]).summary  # the same file once more
    assert again["spectra"] == FILES
    assert again["scans"] == [listed]

    more = normalize_handed(carried).run([second]).summary  # a file not normalized before
    assert more["spectra"] == FILES + 1
    assert [s["file"] for s in more["scans"]] == sorted(P65_SCANS)


ADVISOR = {"target_noise": 1.5e-4, "max_scans": 20}


def test_the_agent_counts_on_and_not_again_for_a_merge_delivered_again(tmp_path):
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    spectra = run_unit("xas.normalize", scans_of(tmp_path), params=REFERENCE_SETTINGS)
    merged = run_unit("xas.merge", [message(o.value, metadata=o.metadata) for o in spectra.outputs])
    merges = [message(o.value, metadata=o.metadata, port="merged") for o in merged.outputs]
    assert len(merges) == 2
    whole = run_unit("xas.convergence-agent", merges, params=ADVISOR).summary
    earlier = run_unit("xas.convergence-agent", merges[:1], params=ADVISOR).summary

    # restarted after deciding on the first merge, which comes again (not acknowledged)
    harness = UnitHarness("xas.convergence-agent", ADVISOR)
    harness.runner.context.carried_summary = earlier
    harness.start()
    assert harness.runner.unit is not None
    harness.runner.unit.restore(harness._message(merges[0]))
    result = harness.run(merges)

    assert len(result.values("plans")) == 1  # the first merge's plan went out before
    assert result.summary == whole
