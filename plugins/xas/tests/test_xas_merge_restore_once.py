"""A restarted `xas.merge` gets back every spectrum of the run's earlier sessions (`restore`). It
merged its group again after each one: a restart of a group of n scans cost n merges of up to n
scans, minutes for a night of a few hundred, while the scientist waited for the next result.
It now files them and merges each group when the merge is needed (at the session's start); the
merges it sends next must be those of a run that was never interrupted.

The spectra are repeats of the bundled goethite scan (`xas_noisy_repeats`), read and normalised
by the plugin's own units and merged with xraylarch; the references are the uninterrupted run's
merges, made at test time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from xas_noisy_repeats import noisy_repeats
from xas_testdata import REFERENCE_SETTINGS

from asapo_pipelines.testing.harness import UnitHarness, message, run_unit
from asapo_pipelines_xas.merge import Merger

SCANS = 5


@pytest.fixture(scope="module")
def spectra(tmp_path_factory) -> list[Any]:
    """The normalised repeats as xas.normalize sends them, in the order measured."""
    directory = tmp_path_factory.mktemp("repeats")
    noisy_repeats(directory, SCANS, 1.5e-4)
    scans = run_unit("xas.scan-files", params={"directory": str(directory), "pattern": "*.xdi"})
    normalised = run_unit(
        "xas.normalize",
        [message(o.value, metadata=o.metadata) for o in scans.outputs],
        params=REFERENCE_SETTINGS,
    )
    assert not normalised.errors
    return [message(o.value, metadata=o.metadata) for o in normalised.outputs]


def _close(got: Any, want: Any) -> bool:
    """numpy's allclose of two numbers or arrays, where a NaN (JSON's null) equals a NaN."""
    return bool(
        np.allclose(np.array(got, dtype=float), np.array(want, dtype=float), equal_nan=True)
    )


def _merges(result: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(o.provenance.get("key"), o.value) for o in result.on("merged")]


@pytest.mark.parametrize("before", [1, 3])
def test_a_restart_sends_the_merges_an_uninterrupted_run_sends(spectra, before):
    uninterrupted = UnitHarness("xas.merge")
    expected = _merges(uninterrupted.send(*spectra))
    assert len(expected) == SCANS

    first = UnitHarness("xas.merge")
    first.send(*spectra[:before])
    restarted = first.restarted()  # the worker's restore, then on_restored
    assert _merges(restarted.result) == []  # the restored merge is the one sent before
    after = _merges(restarted.send(*spectra[before:]))

    assert [key for key, _ in after] == [key for key, _ in expected[before:]]
    assert [m["number"] for _, m in after] == list(range(before + 1, SCANS + 1))
    for (_, got), (_, want) in zip(after, expected[before:], strict=True):
        for part in ("accepted", "rejected", "latest", "n_merged", "glitches", "noise_series"):
            assert got.get(part) == want.get(part), part
        for part in ("values", "arrays"):
            assert got[part].keys() == want[part].keys()
            for name, value in want[part].items():
                assert _close(got[part][name], value), f"{part}.{name}"
    assert restarted.shutdown().summary == uninterrupted.shutdown().summary


def test_a_restart_merges_the_restored_group_once(spectra, monkeypatch):
    first = UnitHarness("xas.merge")
    first.send(*spectra)
    summary = first.runner.summary()
    sizes: list[int] = []
    merge = Merger._merge

    def counted(self: Merger, key: Any, entries: list[Any], *args: Any, **kw: Any) -> Any:
        sizes.append(len(entries))
        return merge(self, key, entries, *args, **kw)

    monkeypatch.setattr(Merger, "_merge", counted)
    restarted = first.restarted()
    # the group's first scan (its first merge fixes the noise scale the later ones compare
    # with), then all of them once; not a merge of 1, 2, ..., n scans
    assert sizes == [1, SCANS]
    assert restarted.shutdown().summary == summary
