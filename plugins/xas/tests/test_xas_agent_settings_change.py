"""The convergence agent after the normalisation changed mid-run (`pipeline run --resume --set
normalize.noise.rmax=30` on the P65 example, or `plugins/xas` upgraded between sessions): the
merge averages only the spectra normalised the new way, and the agent fits its noise floor only
to the noise of those merges. Noise over another R range, or from other code, is on another
scale; mixed into the fit it changed the floor, the predicted scans and the decision.

Real P65 repeats (their counts changed by 0.002 %: other measurements), normalised and merged by
the units' runners; the noise values are checked against xraylarch at test time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from xas_agent_procs import NORMALIZE, noisy_copy

from asapo_pipelines.catalog import Catalog
from asapo_pipelines.sdk import Message
from asapo_pipelines.testing.harness import Given, UnitHarness, message, run_chain, run_unit
from asapo_pipelines.transport.formats import encode
from asapo_pipelines.worker.naming import FIRST_STREAM

#: the resume of the finding: noise over 15-30 Å instead of the example's 15-25 Å
RESUMED = {**NORMALIZE, "noise": {**NORMALIZE["noise"], "rmax": 30}}
#: below what a few repeats reach: the agent asks for more and predicts how many
ADVISOR = {"target_noise": 1.0e-4, "max_scans": 20}
OLD_SCANS, NEW_SCANS = 4, 3
RESTARTED = "noise history restarted"


@pytest.fixture(scope="module")
def repeats(tmp_path_factory) -> tuple[Path, Path]:
    """Scans measured before the resume (`old/`) and after it (`new/`)."""
    root = tmp_path_factory.mktemp("settings-change")
    for i in range(OLD_SCANS + NEW_SCANS):
        noisy_copy(root / ("old" if i < OLD_SCANS else "new"), i, 2e-5)
    return root / "old", root / "new"


def spectra(directory: Path, params: dict[str, Any], version: str | None = None) -> list[Given]:
    """The spectra `xas.normalize` (of plugin `version`, else the installed one) makes of the
    scan files `xas.scan-files` reads in `directory`."""
    normalize = Catalog.load().get("xas.normalize")
    if version is not None:
        normalize = normalize.model_copy(update={"version": version})
    scan_files = ("xas.scan-files", {"directory": str(directory), "pattern": "*.xdi"})
    done = run_chain([scan_files, (normalize, params)])
    assert done.errors == []
    return [message(o.value, metadata=o.metadata) for o in done.streams["1-xas.normalize.spectra"]]


def merges_of(feed: list[Given]) -> list[dict[str, Any]]:
    merged = run_unit("xas.merge", feed)
    assert merged.errors == []
    return merged.values("merged")


@pytest.fixture(scope="module")
def old_spectra(repeats) -> list[Given]:
    return spectra(repeats[0], NORMALIZE)


@pytest.fixture(scope="module")
def resumed(repeats, old_spectra) -> list[dict[str, Any]]:
    """The merges after each scan: four normalised as the example, then three with rmax 30."""
    return merges_of([*old_spectra, *spectra(repeats[1], RESUMED)])


def agent() -> UnitHarness:
    """The agent of one run: every process of it makes the same uids on the same merges."""
    harness = UnitHarness("xas.convergence-agent", ADVISOR, pipeline="p65", instance="advisor")
    harness.runner.context.run = {"run": "r1", "started": 1.0}
    return harness.start()


def decide(merges: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agent's plan suggestion on each merge, as the unit sends them."""
    harness = agent()
    harness.send(*(message(m, port="merged", id=i) for i, m in enumerate(merges, start=1)))
    return harness.shutdown().values("plans")


def fit_and_decision(plan: dict[str, Any]) -> dict[str, Any]:
    """What the noise fit says and decides; not the scans asked for now, which depend on those
    asked for before the change and not yet arrived."""
    metrics = plan["arguments"]["metrics"]
    keys = ("noise_model", "predicted_scans_total", "uncertain", "epsilon_k", "n_merged")
    return {
        "action": plan["action"],
        "confidence": plan["confidence"],
        **{k: metrics.get(k) for k in keys},
    }


def larch_noise(path: Path, noise: dict[str, Any]) -> float:
    """epsilon_k of one scan file by xraylarch called directly with the example's background
    and `noise` (kmax = max(k) - 0.5, as the units use it)."""
    from larch import Group
    from larch.xafs import autobk, estimate_noise, pre_edge

    from asapo_pipelines_xas.normalize import compute_mu
    from asapo_pipelines_xas.readers import read_scan

    scan = read_scan(path)
    group = Group(energy=np.asarray(scan.energy, dtype=float), mu=compute_mu(scan, "transmission"))
    pre_edge(group)
    autobk(group, **NORMALIZE["autobk"])
    kmax = float(group.k.max()) - 0.5
    estimate_noise(group.k, group.chi, group=group, kmax=kmax, **noise)
    return float(group.epsilon_k)


def test_noise_over_another_r_range_is_not_fitted_with_the_new(repeats, resumed, caplog):
    old, new = resumed[:OLD_SCANS], resumed[OLD_SCANS:]
    # the merges after the resume average the new scans alone, their noise over 15-30 Å as
    # xraylarch gives it, which is not the noise over 15-25 Å of the same scan
    first = new[0]
    assert first["n_merged"] == 1
    assert [r.get("superseded") for r in first["rejected"]] == [True] * OLD_SCANS
    scan = sorted(repeats[1].glob("*.xdi"))[0]
    eps = first["values"]["epsilon_k"]
    assert eps == pytest.approx(larch_noise(scan, RESUMED["noise"]), rel=0.01)
    assert eps != pytest.approx(larch_noise(scan, NORMALIZE["noise"]), rel=0.01)
    assert all(m["settings"]["noise"]["rmax"] == 25 for m in old)

    with caplog.at_level(logging.WARNING):
        plans = decide(resumed)
    alone = decide(new)  # an agent that only ever saw merges normalised the new way

    # the fit after the change is that of the new merges alone: its points, floor, prediction
    # and decision
    assert [fit_and_decision(p) for p in plans[OLD_SCANS:]] == [fit_and_decision(p) for p in alone]
    last = plans[-1]["arguments"]["metrics"]["noise_model"]
    # each new scan's own noise and each merge of two or more of them
    assert last["points"] == NEW_SCANS + (NEW_SCANS - 1), plans[-1]["reason"]
    # said once, on the first merge of the new settings, naming the change
    said = [i for i, p in enumerate(plans) if RESTARTED in p["reason"]]
    assert said == [OLD_SCANS], [p["reason"] for p in plans]
    # the values as the pipeline file and `--set` write them: `30`, not Python's `30.0`
    rmax = f"noise.rmax {RESUMED['noise']['rmax']}, not {NORMALIZE['noise']['rmax']}"
    assert rmax in plans[OLD_SCANS]["reason"]
    restart = plans[OLD_SCANS]["arguments"]["metrics"]["noise_history_restarted"]
    assert restart["dropped"] == OLD_SCANS - 1  # the old merges of two or more scans
    # the reason counts every old merge, as the user does
    assert restart["earlier_merges"] == OLD_SCANS
    assert f"the noise of the {OLD_SCANS} earlier merges of this group" in restart["reason"]
    logged = [r.getMessage() for r in caplog.records if RESTARTED in r.getMessage()]
    assert len(logged) == 1, logged
    assert rmax in logged[0]


#: other changes that put the noise on another scale: the plugin upgraded (the settings kept),
#: the energy calibrated on the reference foil; and what the agent's reason names
OTHER_CHANGES = {
    "upgrade": ({"params": NORMALIZE, "version": "99.0.0"}, "99.0.0"),
    "calibrate": ({"params": {**NORMALIZE, "calibrate": True}}, "calibrate true, not false"),
}


@pytest.mark.parametrize("change", list(OTHER_CHANGES))
def test_noise_of_merges_normalised_otherwise_is_not_fitted_with_the_new(
    repeats, old_spectra, change
):
    how, named = OTHER_CHANGES[change]
    merges = merges_of([*old_spectra, *spectra(repeats[1], **how)])
    new = merges[OLD_SCANS:]
    assert new[0]["n_merged"] == 1
    plans = decide(merges)
    alone = decide(new)
    assert [fit_and_decision(p) for p in plans[OLD_SCANS:]] == [fit_and_decision(p) for p in alone]
    said = [p["reason"] for p in plans if RESTARTED in p["reason"]]
    assert len(said) == 1, said
    assert named in said[0]


def untimed(plan: dict[str, Any]) -> dict[str, Any]:
    """A suggestion without the time it was made at."""
    return {k: v for k, v in plan.items() if k != "time"}


def replayed(merged: dict[str, Any], msg_id: int) -> Message:
    """A merge as the worker hands it to `restore` after a restart."""
    payload, meta = encode(merged, "json_arrays")
    return Message("merged", "merged-in", FIRST_STREAM, msg_id, payload, meta)


@pytest.mark.parametrize("restored", [OLD_SCANS, OLD_SCANS + 1], ids=["before", "after"])
def test_a_restarted_agent_restores_the_history_of_the_new_settings(resumed, restored, caplog):
    """Restarted before or after the first merge of the new settings: it decides as an agent
    that never stopped, and says the history restarted only if that merge is new to it."""
    uninterrupted = decide(resumed)
    second = agent()
    for msg_id, merged in enumerate(resumed[:restored], start=1):
        second.runner.unit.restore(replayed(merged, msg_id))
    later = list(enumerate(resumed, start=1))[restored:]
    caplog.clear()  # the uninterrupted agent's
    with caplog.at_level(logging.WARNING):
        second.send(*(message(m, port="merged", id=i) for i, m in later))
    plans = second.shutdown().values("plans")
    assert [untimed(p) for p in plans] == [untimed(p) for p in uninterrupted[restored:]]
    logged = [r.getMessage() for r in caplog.records if RESTARTED in r.getMessage()]
    assert len(logged) == (1 if restored == OLD_SCANS else 0), logged
