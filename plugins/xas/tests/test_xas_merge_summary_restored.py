"""A restarted or resumed `xas.merge` rebuilds its merges with `restore` and sends them at its
input stream's next hook: a watched stream with no new spectrum gives none until its end. Its
summary must show the merges as they stand all the while; it said `groups 0`, which `pipeline
status` showed and `pipeline reprocess` took for a change ("groups: 0 -> 1")."""

from __future__ import annotations

import shutil

from xas_testdata import DATA, P65_SCANS, REFERENCE_SETTINGS

from asapo_pipelines.testing.harness import UnitHarness, message, run_unit


def test_a_restored_merge_shows_in_the_summary_before_it_is_sent_again(tmp_path):
    for name in P65_SCANS:
        shutil.copy(DATA / name, tmp_path / name)
    scans = run_unit("xas.scan-files", params={"directory": str(tmp_path), "pattern": "*.xdi"})
    spectra = run_unit(
        "xas.normalize",
        [message(o.value, metadata=o.metadata) for o in scans.outputs],
        params=REFERENCE_SETTINGS,
    )
    inputs = [message(o.value, metadata=o.metadata) for o in spectra.outputs]
    uninterrupted = run_unit("xas.merge", inputs).summary
    assert uninterrupted["groups"] == 1

    restarted = UnitHarness("xas.merge")
    restarted.start()
    assert restarted.runner.unit is not None
    for given in inputs:  # what the worker replays from the merge's own output
        restarted.runner.unit.restore(restarted._message(given))
    # no new spectrum, no stream end yet: a watched stream waiting for the next scan
    assert restarted.shutdown().summary == uninterrupted
