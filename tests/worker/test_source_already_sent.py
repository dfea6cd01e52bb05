"""`Source.already_sent(count)`: a resumed source that passes over items an earlier session sent,
unchanged, without emitting them again (xas.scan-files over a folder of 2,000 scans) says so,
and they count as duplicates skipped in its status, as an item emitted again under a key sent
before does. The core read the XAS plugin's own summary key for them before."""

from __future__ import annotations

import sys
import types

import pytest
from test_unit_summary import read_all, run_worker

from asapo_pipelines.sdk import Source, UnitUsageError, describe, out
from asapo_pipelines.testing.harness import UnitHarness
from asapo_pipelines.worker.naming import status_source

#: items the source knows as sent without reading them again
KNOWN = 5


class Resuming(Source):
    """Sends 0..2 under keys and passes over `KNOWN` items it says were sent before."""

    def run(self):
        for i in range(3):
            self.emit(None, {"n": i}, key=str(i))
        self.already_sent(KNOWN)
        self.already_sent(0)


MODULE = types.ModuleType("already_sent_test_units")
MODULE.Resuming = Resuming
sys.modules[MODULE.__name__] = MODULE

RESUMING = describe(
    "test.resuming",
    kind="connector",
    summary="passes over items sent before",
    runtime="already_sent_test_units:Resuming",
    outputs=[out("numbers")],
)


def test_the_items_a_source_passed_over_count_as_skipped_in_its_status(tmp_path):
    store = tmp_path / "store"
    run_worker(store, RESUMING, "resume", outputs={"numbers": "numbers"})
    final = read_all(store, status_source("demo"), "resume.0")[-1].metadata
    assert (final["state"], final["outputs"]) == ("finished", 3), final
    assert final["duplicates_skipped"] == KNOWN, final
    # started again: the three it emits are skipped by key, the others it says
    again = run_worker(store, RESUMING, "resume", outputs={"numbers": "numbers"})
    assert (again.counters.outputs, again.counters.duplicates_skipped) == (0, 3 + KNOWN)
    assert len(read_all(store, "numbers", "default")) == 3


def test_the_harness_counts_them_and_a_call_outside_run_is_refused():
    assert UnitHarness(RESUMING).run().already_sent == KNOWN
    harness = UnitHarness(RESUMING)
    harness.start()
    with pytest.raises(UnitUsageError, match="outside of a running source"):
        harness.runner.unit.already_sent(1)
